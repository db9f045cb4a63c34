"""Real processes for end-to-end tests: free ports, the hookkeeper command,
waiting until a server answers, and stopping it with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOOKKEEPER = str(BIN / "hookkeeper")
GRPCURL = str(BIN / "grpcurl")


def free_port() -> int:
    """A TCP port nothing listens on right now (tests never use fixed ports)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The current environment without HOOKKEEPER_* leaking in, plus ``extra``.

    ``serve`` runs no dispatcher unless ``extra`` asks for one: every
    configuration queues a connectivity check of its URL, and a dispatcher
    would resolve the made-up hosts tests and benchmarks register
    (``hooks.example.com``) through the machine's resolver, off loopback.
    Tests that deliver point at receivers on 127.0.0.1 and turn it on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOOKKEEPER_", "OTEL_"))}
    env["HOOKKEEPER_DISPATCHER_ENABLED"] = "false"
    env.update(extra)
    return env


def run_cli(args: list[str], env: Mapping[str, str], timeout: float = 60) -> str:
    """Runs ``hookkeeper ARGS``; returns stdout; raises with stderr on failure."""
    result = subprocess.run(
        [HOOKKEEPER, *args], env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(f"hookkeeper {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def wait_for_grpc_health(
    address: str, timeout: float = 20, credentials: grpc.ChannelCredentials | None = None
) -> None:
    """Blocks until the gRPC health service at ``address`` answers SERVING
    (over TLS with ``credentials``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with (
                grpc.secure_channel(address, credentials)
                if credentials
                else grpc.insecure_channel(address)
            ) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no healthy gRPC server at {address}")
        time.sleep(0.1)


@dataclass
class Process:
    """A started child process and the file its output goes to."""

    popen: subprocess.Popen[bytes]
    log_path: Path

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM, then wait; returns the exit code (SIGKILL if it hangs)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return int(self.popen.returncode)

    def kill(self) -> None:
        """SIGKILL, no grace."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")


def start(args: list[str], env: Mapping[str, str], log_path: Path) -> Process:
    """Starts ``hookkeeper ARGS`` with output to ``log_path``."""
    log = log_path.open("wb")
    popen = subprocess.Popen(
        [HOOKKEEPER, *args], env=dict(env), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
    )
    return Process(popen, log_path)
