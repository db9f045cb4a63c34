"""Two replicas on one PostgreSQL database, each with its own read cache and
change feed: a write on one is seen by the other's next read."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from sqlalchemy import event

from hookkeeper.service.app.callback_configs import CallbackConfigs
from hookkeeper.service.app.config_cache import ConfigCache
from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.app.secret_rotation import SecretRotation
from hookkeeper.service.crypto.keyring import Keyring
from hookkeeper.service.domain import signing
from hookkeeper.service.domain.callback_config import ConfigFields
from hookkeeper.service.domain.errors import NotFound
from hookkeeper.service.store.change_feed import ChangeListener
from hookkeeper.service.store.database import Database
from tests.support.clock import FakeClock

pytestmark = pytest.mark.postgres

FIELDS = ConfigFields("https://hooks.example.com", "k", "ops@example.com")


@pytest.fixture
async def replicas(
    postgres_url: str, keyring: Keyring, clock: FakeClock
) -> AsyncIterator[list[AppContext]]:
    # PostgreSQL only: the change feed is LISTEN/NOTIFY; SQLite runs no cache.
    database_url = postgres_url
    async with AsyncExitStack() as stack:
        contexts = []
        for _ in range(2):
            database = Database(database_url, pool_size=3)
            stack.push_async_callback(database.close)
            cache = ConfigCache(ttl_seconds=3600)  # only invalidation may refresh it
            listener = ChangeListener(
                database_url, cache.invalidate, functools.partial(_switch, cache)
            )
            listener.start()
            stack.push_async_callback(listener.stop)
            contexts.append(AppContext(database, keyring, Policy(), clock, cache))
        await _eventually(lambda: _all_live(contexts))
        yield contexts


def _switch(cache: ConfigCache, live: bool) -> None:
    cache.reset(enabled=live)


async def _all_live(contexts: list[AppContext]) -> bool:
    return all(c.cache is not None and c.cache.enabled for c in contexts)


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_refresh_on_one_replica_is_signed_with_on_the_other(
    replicas: list[AppContext],
) -> None:
    a, b = replicas
    created = await CallbackConfigs(a).create("acme", FIELDS)
    name = created.config.name
    signed = await SecretRotation(b).sign(name, b"{}", None)  # now cached on b
    assert signed.header == signing.sign([created.secret], signed.timestamp, b"{}")

    refreshed = await SecretRotation(a).refresh(name, keep_existing=False)

    async def b_uses_new_secret() -> bool:
        got = await SecretRotation(b).sign(name, b"{}", None)
        return got.header == signing.sign([refreshed.secret], got.timestamp, b"{}")

    await _eventually(b_uses_new_secret)


async def test_update_and_delete_reach_the_other_replica(replicas: list[AppContext]) -> None:
    a, b = replicas
    name = (await CallbackConfigs(a).create("acme", FIELDS)).config.name
    assert (await CallbackConfigs(b).get(name)).contact_email == FIELDS.contact_email
    await CallbackConfigs(a).update(name, ConfigFields(contact_email="new@example.com"), [])

    async def b_sees_update() -> bool:
        return (await CallbackConfigs(b).get(name)).contact_email == "new@example.com"

    await _eventually(b_sees_update)
    await CallbackConfigs(a).delete(name)

    async def b_sees_delete() -> bool:
        try:
            await CallbackConfigs(b).get(name)
        except NotFound:
            return True
        return False

    await _eventually(b_sees_delete)


async def test_a_cached_read_does_not_touch_the_database(replicas: list[AppContext]) -> None:
    a, _ = replicas
    assert a.cache is not None
    configs = CallbackConfigs(a)
    name = (await configs.create("acme", FIELDS)).config.name
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(a.database.engine.sync_engine, "before_cursor_execute", count)
    try:
        await configs.get(name)  # a miss: one SELECT, then cached
        assert len(statements) == 1
        await configs.get(name)
        await SecretRotation(a).sign(name, b"{}", None)  # a miss for the secrets
        await SecretRotation(a).sign(name, b"{}", None)
        assert len(statements) == 2
        a.cache.reset(enabled=False)  # the feed is down: every read goes to the database
        await configs.get(name)
        assert len(statements) == 3
    finally:
        event.remove(a.database.engine.sync_engine, "before_cursor_execute", count)
