"""Where the server's CPU goes under load: ``python -m bench.profile_writes [OPS]``.

Runs ``hookkeeper serve`` on a fresh PostgreSQL database under ``py-spy
record`` (a sampling profiler; the server runs unchanged), drives it with
``bench.grpc_load`` for the given operations (default ``create,update,refresh,
delete``), then prints what the samples say: the share of CPU samples by
layer (inclusive) and the functions with the most samples of their own. The
figures in docs/write-path.md come from here. Not part of ``make bench``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from bench.grpc_api import TOKEN, _start_echo, _wait_for_echo
from tests.support.postgres import create_database, drop_database
from tests.support.processes import (
    BIN,
    HOOKKEEPER,
    ROOT,
    base_env,
    free_port,
    run_cli,
    wait_for_grpc_health,
)

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
# Layers, matched in this order against each frame's file path; a sample
# counts once per layer it passes through (inclusive).
LAYERS = [
    ("gRPC servicers + interceptors (service/api/)", "service/api/"),
    ("use cases (service/app/)", "service/app/"),
    ("repositories (service/store/)", "service/store/"),
    ("in-process dispatcher (service/delivery/)", "service/delivery/"),
    ("audit sealer (AuditTrail.run)", "AuditTrail.run "),
    ("SQLAlchemy", "sqlalchemy/"),
    ("asyncpg", "asyncpg/"),
    ("sealing (service/crypto/)", "service/crypto/"),
    ("aiohttp (the dispatcher's HTTP client)", "aiohttp/"),
    ("grpc.aio", "grpc/"),
]


def _stacks(raw: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in raw.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def summarise(raw: Path, top: int = 25) -> str:
    """A markdown summary of a py-spy raw (collapsed stacks) file."""
    stacks = _stacks(raw)
    total = sum(count for _, count in stacks) or 1
    layers: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    # Start-up (imports) is not the steady state under load.
    stacks = [(f, n) for f, n in stacks if not any("_find_and_load" in x for x in f)]
    total = sum(count for _, count in stacks) or 1
    for frames, count in stacks:
        for label, needle in LAYERS:
            if any(needle in frame for frame in frames):
                layers[label] += count
        # "function (path:line)": keep function and file, drop the line.
        leaf = frames[-1].rsplit(":", 1)[0] + ")" if frames else "?"
        own[leaf.replace(str(ROOT) + "/", "").replace(sys.prefix + "/", "")] += count
    lines = [f"{total} samples.", "", "| layer (inclusive) | share |", "| --- | ---: |"]
    lines += [f"| {label} | {layers[label] / total:.0%} |" for label, _ in LAYERS]
    lines += ["", "| function (self) | share |", "| --- | ---: |"]
    lines += [f"| `{name}` | {n / total:.1%} |" for name, n in own.most_common(top)]
    return "\n".join(lines)


def _profiled_serve(env: dict[str, str], raw: Path, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    return subprocess.Popen(
        [str(BIN / "py-spy"), "record", "--format", "raw", "--rate", "200",
         *os.environ.get("PROFILE_FLAGS", "--nonblocking").split(),
         "-o", str(raw), "--", HOOKKEEPER, "serve"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip


async def main(ops: str) -> None:
    """Profiles the server while the load generator runs ``ops``."""
    url, database = await create_database("hookkeeper_profile")
    with tempfile.TemporaryDirectory(prefix="hookkeeper-profile-") as tmp_dir:
        tmp = Path(tmp_dir)
        raw = Path(os.environ.get("PROFILE_RAW", tmp / "profile.txt"))
        profiler: subprocess.Popen[bytes] | None = None
        echo_process: subprocess.Popen[bytes] | None = None
        try:
            env = base_env({})
            keys = await asyncio.to_thread(run_cli, ["keys", "generate"], env)
            api, echo = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            env = base_env(
                {
                    "HOOKKEEPER_DATABASE_URL": url,
                    "HOOKKEEPER_VAR_DIR": str(tmp / "var"),
                    "HOOKKEEPER_MASTER_KEYS": keys.strip(),
                    "HOOKKEEPER_SERVICE_TOKENS": TOKEN,
                    "HOOKKEEPER_GRPC_LISTEN": api,
                    **{k: v for k, v in os.environ.items() if k.startswith("HOOKKEEPER_")},
                }
            )
            await asyncio.to_thread(run_cli, ["migrate"], env)
            profiler = _profiled_serve(env, raw, tmp / "server.log")
            echo_process = _start_echo(echo, tmp / "echo.log")
            await asyncio.to_thread(wait_for_grpc_health, api)
            await asyncio.to_thread(_wait_for_echo, echo, tmp / "echo.log")
            server = psutil.Process(profiler.pid).children()[0]
            load = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.grpc_load", "--api", api, "--echo", echo,
                "--token", TOKEN.split("=", 1)[1], "--api-pid", str(server.pid),
                "--seconds", str(SECONDS), "--warmup", "1", "--ops", ops,
                stdout=asyncio.subprocess.PIPE, cwd=ROOT,
            )  # fmt: skip
            stdout, _ = await load.communicate()
            print(stdout.decode())
            server.send_signal(signal.SIGTERM)
            await asyncio.to_thread(profiler.wait, 30)
            print(summarise(raw))
        finally:
            for process in (profiler, echo_process):
                if process is not None and process.poll() is None:
                    process.terminate()
                    process.wait(10)
            await drop_database(database)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "create,update,refresh,delete"))
