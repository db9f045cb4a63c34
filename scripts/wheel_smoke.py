"""Smoke test of an installed Hookkeeper wheel (run by scripts/wheel-check.sh
with the clean virtualenv's python, ``-I``, from an empty temp folder).

Checks that the code comes from the virtualenv and not from the checkout, then
starts ``hookkeeper dev`` and checks that it answers gRPC health, serves
GraphiQL (the page and one of its assets) and runs one mutation through the
gateway with the partner token it printed. Standard library and the wheel's
own dependencies only. Exits non-zero with the reason on any failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CREATE = """mutation {
  createNotificationCallbackConfig(input: {
    callbackUrl: "https://wheel.example.com/hook"
    apiKey: "wheel-check-key"
    requestTimeoutSeconds: 30
    contactEmail: "wheel@example.com"
  }) { callbackConfig { id callbackUrl } secret }
}"""


def fail(message: str) -> None:
    """Stops the smoke test with a reason."""
    print(f"wheel-check: FAILED: {message}", file=sys.stderr)
    raise SystemExit(1)


def free_port() -> int:
    """A port nothing listens on right now (127.0.0.1 only)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def check_installed_outside(checkout: Path) -> None:
    """The hookkeeper package and its GraphiQL assets come from the venv."""
    import hookkeeper.gateway.graphiql as graphiql
    import hookkeeper.service

    for entry in sys.path:
        if entry and Path(entry).resolve().is_relative_to(checkout):
            fail(f"the checkout is on sys.path: {entry}")
    for location in [*hookkeeper.service.__path__, graphiql.__file__]:
        if Path(location).resolve().is_relative_to(checkout):
            fail(f"hookkeeper is imported from the checkout: {location}")
        if not Path(location).resolve().is_relative_to(Path(sys.prefix).resolve()):
            fail(f"hookkeeper is imported from outside the venv: {location}")
    if not (graphiql.GRAPHIQL_ASSETS / "graphiql.min.js").is_file():
        fail(f"the wheel has no GraphiQL assets under {graphiql.GRAPHIQL_ASSETS}")


def wait_for_token(log: Path, process: subprocess.Popen[bytes], timeout: float = 90) -> str:
    """The partner token `hookkeeper dev` prints last, once both are up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tokens = [line for line in log.read_text().splitlines() if line.startswith("hkp_")]
        if tokens:
            return tokens[-1]
        if process.poll() is not None:
            fail(f"hookkeeper dev exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.2)
    fail(f"hookkeeper dev printed no token in {timeout:.0f}s:\n{log.read_text()}")
    raise AssertionError  # unreachable


def check_health(target: str) -> None:
    """gRPC health answers SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        fail(f"gRPC health is {reply.status}")
    print("wheel-check: gRPC health SERVING")


def get(url: str, accept: str) -> tuple[int, str, bytes]:
    """A GET: status, content type and body."""
    # Only http://127.0.0.1 URLs built in this file are ever opened.
    request = urllib.request.Request(url, headers={"Accept": accept})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310
        return reply.status, reply.headers.get("Content-Type", ""), reply.read()


def check_graphiql(base: str) -> None:
    """The GraphiQL page loads its vendored assets, and one of them is served."""
    status, kind, body = get(f"{base}/graphql", "text/html")
    page = body.decode()
    if status != 200 or "text/html" not in kind or "graphiql.min.js" not in page:
        fail(f"GraphiQL page: {status} {kind}: {page[:300]}")
    asset = "/graphql/static/graphiql/graphiql.min.js"
    status, kind, body = get(f"{base}{asset}", "*/*")
    if status != 200 or "javascript" not in kind or len(body) < 100_000:
        fail(f"GraphiQL asset {asset}: {status} {kind}, {len(body)} bytes")
    print(f"wheel-check: GraphiQL page and {asset} ({len(body) // 1024} KiB) served")


def check_mutation(base: str, token: str) -> None:
    """createNotificationCallbackConfig through the gateway with the dev token."""
    request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1 only)
        f"{base}/graphql",
        data=json.dumps({"query": CREATE}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=20) as reply:  # noqa: S310
        answer = json.loads(reply.read())
    created = (answer.get("data") or {}).get("createNotificationCallbackConfig") or {}
    config = created.get("callbackConfig") or {}
    if answer.get("errors") or config.get("callbackUrl") != "https://wheel.example.com/hook":
        fail(f"createNotificationCallbackConfig answered {answer}")
    if len(created.get("secret", "")) != 24:
        fail("createNotificationCallbackConfig returned no secret")
    print(f"wheel-check: createNotificationCallbackConfig created {config['id']}")


def main() -> None:
    """Runs the checks; `hookkeeper dev` is stopped whatever happens."""
    checkout = Path(sys.argv[1]).resolve()
    check_installed_outside(checkout)
    grpc_target = f"127.0.0.1:{free_port()}"
    gateway_port = free_port()
    env = {
        **os.environ,
        "HOOKKEEPER_GRPC_LISTEN": grpc_target,
        "HOOKKEEPER_GATEWAY_LISTEN": f"127.0.0.1:{gateway_port}",
        "OTEL_SDK_DISABLED": "true",
    }
    hookkeeper = Path(sys.prefix) / "bin" / "hookkeeper"
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "dev.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [str(hookkeeper), "dev"], cwd=Path.cwd(), env=env, stdout=sink, stderr=sink
            )
        try:
            token = wait_for_token(log, process)
            check_health(grpc_target)
            base = f"http://127.0.0.1:{gateway_port}"
            check_graphiql(base)
            check_mutation(base, token)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                fail("hookkeeper dev did not stop on SIGTERM")
    print("wheel-check: ok")


if __name__ == "__main__":
    main()
