"""Real ``hookkeeper serve`` and ``hookkeeper mailer`` processes sending
expiry warnings to a real SMTP server, with the test-only clock offset."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

from hookkeeper.service.app.callback_configs import CallbackConfigs
from hookkeeper.service.app.clock_offset import CONFIRMATION
from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.crypto.keyring import Keyring, generate_key_entry
from hookkeeper.service.domain.callback_config import ConfigFields
from hookkeeper.service.store.database import Database
from tests.support.processes import (
    base_env,
    free_port,
    run_cli,
    start,
    wait_for_grpc_health,
)
from tests.support.smtp import smtp_server
from tests.support.sqlite import sqlite_url

pytestmark = pytest.mark.e2e
DAY = 86400


async def _create_config(url: str, master_keys: str) -> str:
    database = Database(url, pool_size=1)
    try:
        ctx = AppContext(database, Keyring.parse(master_keys), Policy())
        created = await CallbackConfigs(ctx).create(
            "acme-lodging",
            ConfigFields("https://hooks.example.com/in", "an-api-key-1234", "ops@example.com"),
        )
        return created.config.name.config_id
    finally:
        await database.close()


def _wait_for_line(process: object, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.output():  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {text!r} in: {process.output()}")  # type: ignore[attr-defined]
        time.sleep(0.05)


def test_serve_and_mailer_processes_send_each_warning_once(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    master_keys = generate_key_entry()
    with smtp_server() as smtp:
        env = base_env(
            {
                "HOOKKEEPER_VAR_DIR": str(tmp_path),
                "HOOKKEEPER_DATABASE_URL": url,
                "HOOKKEEPER_MASTER_KEYS": master_keys,
                "HOOKKEEPER_SERVICE_TOKENS": "tests=e2e-token-abcdef0123456789",
                "HOOKKEEPER_SMTP_URL": smtp.url,
                "HOOKKEEPER_MAIL_FROM": "Hookkeeper <noreply@example.com>",
                "HOOKKEEPER_MAILER_POLL_SECONDS": "0.2",
                "HOOKKEEPER_UNSAFE_TEST_CLOCK": CONFIRMATION,
                # 29 days before the first secret's expiry.
                "HOOKKEEPER_UNSAFE_CLOCK_OFFSET_SECONDS": str(336 * DAY),
            }
        )
        run_cli(["migrate"], env)
        config_id = asyncio.run(_create_config(url, master_keys))

        port = free_port()
        serve = start(
            ["serve"],
            {**env, "HOOKKEEPER_GRPC_LISTEN": f"127.0.0.1:{port}"},
            tmp_path / "serve.log",
        )
        try:
            wait_for_grpc_health(f"127.0.0.1:{port}")
            first = smtp.inbox.wait_for(1)[0]
            assert config_id in str(first["Subject"]) and "30 days" in str(first["Subject"])
        finally:
            assert serve.terminate() == 0, serve.output()
        # Logs are JSON lines, and the test clock announced itself.
        records = [json.loads(line) for line in serve.output().splitlines() if line.startswith("{")]
        assert any("TEST CLOCK" in r["message"] for r in records)
        assert any("sent the 30-day expiry warning" in r["message"] for r in records)

        # A restarted (standalone) mailer at the same moment sends nothing new.
        mailer = start(["mailer"], env, tmp_path / "mailer.log")
        try:
            _wait_for_line(mailer, "expiry mailer started")
            time.sleep(1.0)  # several polls
            assert len(smtp.inbox.messages) == 1
        finally:
            assert mailer.terminate() == 0, mailer.output()

        # Six days before expiry: the 7-day warning, once.
        later = {**env, "HOOKKEEPER_UNSAFE_CLOCK_OFFSET_SECONDS": str(359 * DAY)}
        mailer = start(["mailer"], later, tmp_path / "mailer2.log")
        try:
            messages = smtp.inbox.wait_for(2)
            time.sleep(0.6)
            assert len(smtp.inbox.messages) == 2
            assert "7 days" in str(messages[1]["Subject"])
        finally:
            assert mailer.terminate() == 0, mailer.output()
        assert "an-api-key-1234" not in serve.output() + mailer.output()


def test_the_mailer_refuses_to_start_without_smtp_or_with_half_a_test_clock(
    tmp_path: Path,
) -> None:
    env = base_env(
        {"HOOKKEEPER_VAR_DIR": str(tmp_path), "HOOKKEEPER_DATABASE_URL": sqlite_url(tmp_path)}
    )
    with pytest.raises(AssertionError, match="HOOKKEEPER_SMTP_URL"):
        run_cli(["mailer"], env, timeout=30)
    with pytest.raises(AssertionError, match="test-only"):
        run_cli(
            ["mailer"],
            {
                **env,
                "HOOKKEEPER_SMTP_URL": "smtp://127.0.0.1:1",
                "HOOKKEEPER_UNSAFE_CLOCK_OFFSET_SECONDS": str(timedelta(days=1).total_seconds()),
            },
            timeout=30,
        )
