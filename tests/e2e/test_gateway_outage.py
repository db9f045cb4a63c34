"""End to end: what the gateway answers while the service behind it cannot
serve, with real processes.

- The service's database (a private PostgreSQL cluster, never the
  machine's) stops: the service reports NOT_SERVING, and the gateway answers
  every GraphQL request 503 with ``Retry-After`` and ``extensions.code``
  ``UNAVAILABLE``, and ``/healthz`` 503, until the database is back.
- The service process is paused (SIGSTOP) or killed: the same, until it
  answers again.

Each time the gateway logs one line when the service goes and one when it
comes back, and no traceback.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_stack import Stack, start_stack
from tests.support.private_postgres import PrivateCluster, started_cluster
from tests.support.processes import run_cli, start, wait_for_grpc_health

pytestmark = pytest.mark.e2e

PROFILE = "{ notificationProfile { callbackConfigs { id } } }"
WENT = "is unavailable"
CAME_BACK = "is available again"


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    """A private PostgreSQL cluster the test may stop."""
    with started_cluster() as private:
        yield private


def _healthz(stack: Stack) -> int:
    return httpx.get(stack.url.replace("/graphql", "/healthz"), timeout=5).status_code


def _wait_healthz(stack: Stack, status: int, within: float = 15) -> float:
    """Polls /healthz every 20 ms until it answers ``status``; returns when."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _healthz(stack) == status:
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"/healthz never answered {status} within {within}s")


def _assert_unavailable(reply: httpx.Response) -> None:
    assert reply.status_code == 503, reply.text
    assert int(reply.headers["retry-after"]) >= 1
    body = reply.json()
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAVAILABLE"]


def _gateway_log(stack: Stack) -> str:
    return stack.gateways[0].output()


def test_a_database_outage_behind_the_service_is_503_at_the_gateway(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    stack = start_stack(tmp_path, HOOKKEEPER_DATABASE_URL=cluster.url)
    try:
        token = run_cli(["partner", "create", "Outage Hotels"], stack.env).splitlines()[-1]
        assert stack.post(PROFILE, token).status_code == 200  # the token is now cached
        cluster.stop()
        _wait_healthz(stack, 503)
        for _ in range(20):
            _assert_unavailable(stack.post(PROFILE, token))
        # An uncached token would need the service to authenticate it: 503 too.
        _assert_unavailable(stack.post(PROFILE, "hkp_" + "u" * 43))
        cluster.start()
        back = time.monotonic()
        healthy = _wait_healthz(stack, 200)
        print(f"\n/healthz 200 again {healthy - back:.3f}s after the database came back")
        assert stack.post(PROFILE, token).status_code == 200
    finally:
        stack.stop()
    log = _gateway_log(stack)
    assert log.count(WENT) == 1, log
    assert log.count(CAME_BACK) == 1, log
    assert "Traceback" not in log, log


def test_a_paused_or_dead_service_is_503_and_healthz_follows_it(tmp_path: Path) -> None:
    stack = start_stack(tmp_path)
    try:
        _, token = stack.partner("Paused Hotels")
        assert stack.post(PROFILE, token).status_code == 200
        assert _healthz(stack) == 200

        # Paused: it accepts connections but answers nothing.
        os.kill(stack.service.popen.pid, signal.SIGSTOP)
        try:
            _wait_healthz(stack, 503)
            _assert_unavailable(stack.post(PROFILE, token))
        finally:
            os.kill(stack.service.popen.pid, signal.SIGCONT)
        resumed = time.monotonic()
        healthy = _wait_healthz(stack, 200)
        print(f"\n/healthz 200 again {healthy - resumed:.3f}s after the service resumed")
        assert stack.post(PROFILE, token).status_code == 200

        # Dead: nothing listens on its port.
        stack.service.kill()
        _wait_healthz(stack, 503)
        for _ in range(20):
            _assert_unavailable(stack.post(PROFILE, token))
        stack.service = start(["serve"], stack.env, tmp_path / "serve-again.log")
        wait_for_grpc_health(stack.grpc_target)
        restarted = time.monotonic()
        healthy = _wait_healthz(stack, 200)
        print(f"/healthz 200 again {healthy - restarted:.3f}s after the service was back")
        assert stack.post(PROFILE, token).status_code == 200
    finally:
        stack.stop()
    log = _gateway_log(stack)
    assert log.count(WENT) == 2, log
    assert log.count(CAME_BACK) == 2, log
    assert "Traceback" not in log, log
