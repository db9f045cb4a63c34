"""``hookkeeper dev`` (what ``make run`` runs): the service and the gateway
together, and a development partner token that works, printed last."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from hookkeeper.service.crypto.keyring import generate_key_entry
from tests.support.processes import base_env, free_port, start

pytestmark = pytest.mark.e2e


def _token_line(log: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in log.read_text().splitlines() if line.startswith("hkp_")]
        if lines:
            return lines[-1]
        time.sleep(0.1)
    raise AssertionError(f"no token printed:\n{log.read_text()}")


def test_dev_starts_both_and_prints_a_working_token(tmp_path: Path) -> None:
    port = free_port()
    env = base_env(
        {
            "HOOKKEEPER_VAR_DIR": str(tmp_path),
            "HOOKKEEPER_MASTER_KEYS": generate_key_entry(),
            "HOOKKEEPER_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
            "HOOKKEEPER_GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "HOOKKEEPER_LOG_FORMAT": "text",
        }
    )
    process = start(["dev"], env, tmp_path / "dev.log")
    try:
        token = _token_line(tmp_path / "dev.log")
        reply = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": "{ notificationProfile { callbackConfigs { id } } }"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert reply.json() == {"data": {"notificationProfile": {"callbackConfigs": []}}}
        assert (tmp_path / "dev-partner-token").stat().st_mode & 0o077 == 0
    finally:
        assert process.terminate() == 0, process.output()
