"""A private PostgreSQL cluster a test may stop and start at will.

Outage tests must never stop the machine's PostgreSQL: this one lives in a
temporary folder (initdb), listens on a free port on 127.0.0.1 and a socket
in that folder, and is removed afterwards. When the test runs as root (as in
the CI container), the server runs as the ``postgres`` user, since PostgreSQL
refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.ci import skip_or_fail
from tests.support.processes import free_port


def find_binaries() -> Path | None:
    """The newest PostgreSQL server binaries folder, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    pwd.getpwnam("postgres")  # KeyError (a clear failure) when the user is missing
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class PrivateCluster:
    """A cluster under ``root``; ``start``/``stop`` are pg_ctl's, waiting."""

    bin_dir: Path
    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        """The cluster's data folder."""
        return self.root / "data"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its ``postgres`` database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, args: Sequence[str], timeout: float = 60) -> None:
        result = subprocess.run(
            [*_as_server_user(), *args], capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {result.stdout}{result.stderr}")

    def init(self) -> None:
        """initdb with trust authentication for local connections."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ]
        )

    def start(self) -> None:
        """Starts the server and waits until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c max_connections=100"
        )
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                options,
                "-l",
                str(self.root / "server.log"),
                "-w",
                "start",
            ]
        )

    def stop(self) -> None:
        """Stops the server (fast mode: connected clients are cut off)."""
        self._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]
        )

    def stop_quietly(self) -> None:
        """Stops the server if it runs; never raises (for clean-up)."""
        subprocess.run(
            [
                *_as_server_user(),
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )

    def remove(self) -> None:
        """Stops it if needed and deletes its folder."""
        self.stop_quietly()
        shutil.rmtree(self.root, ignore_errors=True)


def new_cluster(bin_dir: Path) -> PrivateCluster:
    """An initialised (not yet started) private cluster on a free port, in a
    fresh folder under the system temp dir (pytest's own temp dirs are
    private to root, and the server may run as ``postgres``)."""
    cluster = PrivateCluster(bin_dir, Path(tempfile.mkdtemp(prefix="hookkeeper-pg-")), free_port())
    try:
        cluster.init()
    except BaseException:
        shutil.rmtree(cluster.root, ignore_errors=True)
        raise
    return cluster


@contextmanager
def started_cluster() -> Iterator[PrivateCluster]:
    """A private cluster, started, removed afterwards: the one outage tests
    may stop (never the machine's). Skips (fails under CI) without binaries."""
    bin_dir = find_binaries()
    if bin_dir is None:
        skip_or_fail(
            "no PostgreSQL server binaries (pg_ctl) under /usr/lib/postgresql/*/bin",
            "PostgreSQL's server binaries",
        )
        raise AssertionError("unreachable")
    private = new_cluster(bin_dir)
    try:
        private.start()
        yield private
    finally:
        private.remove()
