"""Runs N copies of a long-running command as child processes (``--workers``).

The children of ``hookkeeper serve --workers N`` each bind the same port with
``SO_REUSEPORT`` (as grpc's own multiprocessing example does), so the kernel
spreads incoming connections across them; every child is a whole server with
its own event loop, connection pool, dispatcher and mailer. Each is started
as a fresh interpreter (never forked from this one: gRPC's core does not
survive a fork once it has threads).

The supervisor forwards SIGTERM and SIGINT to every child, waits for them to
drain, and exits 0. A child that dies on its own is logged and started again;
one that keeps dying within seconds of its start (a port taken, a bad
setting) is a crash loop, and the supervisor stops the rest and exits 1
rather than spinning.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

_log = logging.getLogger(__name__)

# A worker learns its supervisor's pid here, so it can stop when that dies.
SUPERVISOR_PID_ENV = "HOOKKEEPER_SUPERVISOR_PID"
# Which copy a worker is (0 first), for what only some copies do.
WORKER_INDEX_ENV = "HOOKKEEPER_WORKER_INDEX"

_PR_SET_PDEATHSIG = 1
_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class RestartPolicy:
    """When a dead worker is started again, and when to give up.

    A worker that ran at least ``stable_seconds`` is restarted at once; one
    that died sooner is restarted after a doubling delay, and after
    ``max_quick_failures`` such deaths in a row the supervisor gives up.
    """

    stable_seconds: float = 10.0
    first_delay: float = 0.5
    max_delay: float = 10.0
    max_quick_failures: int = 5


@dataclass
class _Slot:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_failures: int = 0
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Keeps ``count`` copies of ``argv`` running until told to stop."""

    argv: Sequence[str]
    count: int
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # How long children may take to drain after SIGTERM before SIGKILL.
    stop_timeout: float = 30.0
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    name: str = "worker"
    _slots: list[_Slot] = field(default_factory=list, init=False)
    _stopping: bool = field(default=False, init=False)

    def run(self) -> int:
        """Starts the workers and supervises them; returns the exit code
        (0 after a requested stop, 1 after a crash loop)."""
        if self.count < 1:
            raise ValueError("at least one worker is needed")
        previous = {
            sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self._slots = [_Slot(i) for i in range(self.count)]
            for slot in self._slots:
                self._spawn(slot)
            _log.info(
                "supervisor %d running %d %ss: pids %s",
                os.getpid(),
                self.count,
                self.name,
                ", ".join(str(s.process.pid) for s in self._slots if s.process),
            )
            code = self._supervise()
            self._stop_all()
            return code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _request_stop(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping:
            _log.info("%s received: stopping every %s", signal.Signals(signum).name, self.name)
        self._stopping = True

    def _spawn(self, slot: _Slot) -> None:
        env = {**self.env, SUPERVISOR_PID_ENV: str(os.getpid()), WORKER_INDEX_ENV: str(slot.index)}
        env["OTEL_RESOURCE_ATTRIBUTES"] = _with_instance_id(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
        slot.process = subprocess.Popen(list(self.argv), env=env)
        slot.started = time.monotonic()
        slot.restart_at = None

    def _supervise(self) -> int:
        while not self._stopping:
            now = time.monotonic()
            for slot in self._slots:
                if slot.restart_at is not None:
                    if now >= slot.restart_at:
                        self._spawn(slot)
                        assert slot.process is not None
                        _log.warning(
                            "%s %d restarted as pid %d", self.name, slot.index, slot.process.pid
                        )
                    continue
                assert slot.process is not None
                code = slot.process.poll()
                if code is None or self._stopping:
                    continue
                if not self._schedule_restart(slot, code, now):
                    return 1
            time.sleep(_POLL_SECONDS)
        return 0

    def _schedule_restart(self, slot: _Slot, code: int, now: float) -> bool:
        """Logs a worker's death and plans its restart; False means give up."""
        assert slot.process is not None
        lived = now - slot.started
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        if lived >= self.policy.stable_seconds:
            slot.quick_failures = 0
            delay = 0.0
        else:
            slot.quick_failures += 1
            delay = min(
                self.policy.first_delay * 2 ** (slot.quick_failures - 1), self.policy.max_delay
            )
        if slot.quick_failures >= self.policy.max_quick_failures:
            _log.error(
                "%s %d (pid %d) died with %s %d times in a row within %.0f s of starting: "
                "giving up",
                self.name,
                slot.index,
                slot.process.pid,
                how,
                slot.quick_failures,
                self.policy.stable_seconds,
            )
            return False
        _log.warning(
            "%s %d (pid %d) died with %s after %.1f s; restarting in %.1f s",
            self.name,
            slot.index,
            slot.process.pid,
            how,
            lived,
            delay,
        )
        slot.restart_at = now + delay
        return True

    def _stop_all(self) -> None:
        running = [s.process for s in self._slots if s.process and s.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _log.error("%s pid %d did not drain in time: killing it", self.name, process.pid)
                process.kill()
                process.wait()
        _log.info("every %s stopped", self.name)


def _with_instance_id(attributes: str) -> str:
    """Gives each worker its own OpenTelemetry ``service.instance.id``: the
    workers' cumulative metrics would otherwise collide as one series."""
    if "service.instance.id=" in attributes:
        return attributes
    return ",".join(filter(None, [attributes, f"service.instance.id={uuid.uuid4()}"]))


def python_command(*args: str) -> list[str]:
    """``hookkeeper ARGS`` run by this interpreter (no reliance on PATH)."""
    return [
        sys.executable,
        "-c",
        "import sys; from hookkeeper.service.cli import main; sys.exit(main())",
        *args,
    ]


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2
    CPU quota (a container limited to 2 CPUs on a 64-core host gets 2)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = count or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def resolve_workers(requested: int) -> int:
    """``0`` means one worker per available CPU."""
    return requested if requested > 0 else available_cpus()


def worker_index() -> int:
    """Which of its supervisor's copies this process is: 0 for the first,
    and for a process started on its own."""
    try:
        return max(0, int(os.environ.get(WORKER_INDEX_ENV, "0")))
    except ValueError:
        return 0


def attach_to_supervisor() -> None:
    """In a worker: stop (SIGTERM, so in-flight work drains) when the
    supervisor dies, even by SIGKILL, instead of serving on as an orphan."""
    expected = os.environ.get(SUPERVISOR_PID_ENV)
    if not expected:
        return
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # The supervisor may have died before prctl took effect.
    if str(os.getppid()) != expected:
        _log.error("the supervisor (pid %s) is gone: not starting", expected)
        raise SystemExit(1)
