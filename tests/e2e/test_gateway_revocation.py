"""End to end: a revoked partner token stops working on every gateway at
once, through the service's revocation feed (WatchTokenRevocations), not by
its cache entry expiring: the gateways here cache partners for an hour.

A real service, two real gateways, and the real ``hookkeeper partner
revoke-token`` command, on SQLite (the service polls the token table) and
on PostgreSQL (the revoking transaction NOTIFYs).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.support.gateway_stack import Stack, start_stack
from tests.support.postgres import migrated_postgres
from tests.support.processes import HOOKKEEPER, run_cli

pytestmark = pytest.mark.e2e

PROFILE = "{ notificationProfile { callbackConfigs { id } } }"
CACHE_SECONDS = "3600"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_env(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, str]]:
    """Extra environment for the stack: nothing (SQLite) or a fresh PostgreSQL."""
    if request.param == "sqlite":
        yield {}
        return
    async with migrated_postgres() as url:
        yield {"HOOKKEEPER_DATABASE_URL": url}


def _status(stack: Stack, token: str, url: str) -> int:
    return stack.post(PROFILE, token, url=url).status_code


def _wait_live(stack: Stack) -> None:
    deadline = time.monotonic() + 20
    while not all("token revocation feed live" in g.output() for g in stack.gateways):
        assert time.monotonic() < deadline, [g.output() for g in stack.gateways]
        time.sleep(0.05)


def test_a_revoked_token_stops_working_on_every_gateway(
    database_env: dict[str, str],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    stack = start_stack(
        tmp_path, None, HOOKKEEPER_GATEWAY_PARTNER_CACHE_SECONDS=CACHE_SECONDS, **database_env
    )
    try:
        urls = [stack.url, stack.start_gateway("gateway-2")]
        _wait_live(stack)
        created = run_cli(["partner", "create", "Revoked Hotels"], stack.env).splitlines()
        partner_id, token = created[0], created[-1]
        kept = run_cli(["partner", "issue-token", partner_id], stack.env).splitlines()[-1]
        for url in urls:  # now cached on both gateways
            assert _status(stack, token, url) == 200
            assert _status(stack, kept, url) == 200

        subprocess.run(
            [HOOKKEEPER, "partner", "revoke-token", "-"],
            input=token + "\n",
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        revoked = time.monotonic()
        refused: dict[str, float] = {}
        while len(refused) < len(urls) and time.monotonic() - revoked < 30:
            for url in urls:
                if url not in refused and _status(stack, token, url) == 401:
                    refused[url] = time.monotonic() - revoked
            time.sleep(0.01)
        assert set(refused) == set(urls), refused  # long before the cache's hour
        latency = max(refused.values())
        record_property("revocation_latency_seconds", round(latency, 3))
        print(f"\nrevoked token refused by both gateways {latency:.3f}s after the CLI returned")
        # Only that token: the partner's other one still works everywhere.
        for url in urls:
            assert _status(stack, kept, url) == 200

        run_cli(["partner", "revoke-token", "--partner", partner_id], stack.env)
        deadline = time.monotonic() + 30
        while any(_status(stack, kept, url) != 401 for url in urls):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        stack.stop()
