"""Page tokens over gRPC: a token works for the list that issued it, on any
replica sharing the keyring, and nowhere else (INVALID_ARGUMENT naming
``page_token``)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.notifications.v1 import notification_pb2 as nt
from hookkeeper.notifications.v1 import notification_pb2_grpc as nt_grpc
from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.crypto.keyring import Keyring, generate_key_entry
from hookkeeper.service.server import start_server
from hookkeeper.service.store import migrate
from hookkeeper.service.store.database import Database
from tests.integration.test_grpc_api import new_config, violations
from tests.support.sqlite import sqlite_url

TOKEN = "page-token-tests-0123456789"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


class Replica:
    """One in-process server over the shared database file."""

    def __init__(self, running: Any, database: Database) -> None:
        self.running = running
        self.database = database
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
        self.configs = cc_grpc.CallbackConfigServiceStub(self.channel)
        self.notifications = nt_grpc.NotificationServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close(None)
        await self.running.stop(0)
        await self.database.close()


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[list[Replica]]:
    """Two replicas with the same keyring, a third with another one."""
    url = sqlite_url(tmp_path)
    await asyncio.to_thread(migrate.upgrade, url)
    shared = generate_key_entry()
    started = []
    for entry in (shared, shared, generate_key_entry()):
        database = Database(url, pool_size=2)
        ctx = AppContext(database, Keyring.parse(entry), Policy())
        started.append(Replica(await start_server(ctx, "127.0.0.1:0", f"t={TOKEN}"), database))
    yield started
    for replica in started:
        await replica.close()


async def _fill(replica: Replica, parent: str, count: int) -> None:
    for _ in range(count):
        await replica.configs.CreateCallbackConfig(
            cc.CreateCallbackConfigRequest(parent=parent, callback_config=new_config()),
            metadata=AUTH,
        )


async def _page(replica: Replica, parent: str, token: str = "") -> cc.ListCallbackConfigsResponse:
    return await replica.configs.ListCallbackConfigs(
        cc.ListCallbackConfigsRequest(parent=parent, page_size=2, page_token=token),
        metadata=AUTH,
    )


async def _refused(call: Any) -> list[str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return violations(caught.value)


async def test_a_token_pages_its_own_list_on_any_replica(replicas: list[Replica]) -> None:
    first, second, _ = replicas
    await _fill(first, "partners/acme", 5)
    seen: list[str] = []
    page = await _page(first, "partners/acme")
    seen += [c.name for c in page.callback_configs]
    # Alternate replicas: both derive the same key from the shared keyring.
    for replica in (second, first):
        page = await _page(replica, "partners/acme", page.next_page_token)
        seen += [c.name for c in page.callback_configs]
    assert len(seen) == len(set(seen)) == 5
    assert page.next_page_token == ""


async def test_a_token_is_refused_anywhere_else(replicas: list[Replica]) -> None:
    first, _, stranger = replicas
    await _fill(first, "partners/acme", 3)
    await _fill(first, "partners/other", 3)
    token = (await _page(first, "partners/acme")).next_page_token
    assert token
    hand_made = base64.urlsafe_b64encode(
        json.dumps({"t": "2026-01-01T00:00:00+00:00", "i": "x"}).encode()
    ).decode()
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[3] ^= 1
    edited = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    refusals = [
        _page(first, "partners/other", token),  # another partner's list
        _page(first, "partners/acme", hand_made),
        _page(first, "partners/acme", edited),
        _page(stranger, "partners/acme", token),  # a replica with another keyring
        first.notifications.ListDeliveryAttempts(  # another method
            nt.ListDeliveryAttemptsRequest(parent="partners/acme/deliveries/-", page_token=token),
            metadata=AUTH,
        ),
        first.notifications.ListSubscriptions(
            nt.ListSubscriptionsRequest(parent="partners/acme", page_token=token), metadata=AUTH
        ),
        first.notifications.ListEventTypes(
            nt.ListEventTypesRequest(page_token=token), metadata=AUTH
        ),
    ]
    for call in refusals:
        assert await _refused(call) == ["page_token"]


async def test_the_attempts_filter_is_checked_like_an_event_id(replicas: list[Replica]) -> None:
    """A NUL in the filter would reach PostgreSQL as an encoding error (INTERNAL)."""
    first = replicas[0]
    parent = "partners/acme/deliveries/-"
    assert await _refused(
        first.notifications.ListDeliveryAttempts(
            nt.ListDeliveryAttemptsRequest(parent=parent, event_id="a\x00b"), metadata=AUTH
        )
    ) == ["event_id"]
