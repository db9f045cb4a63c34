"""The unit of work: what a transaction marks as changed is announced on the
change feed only if it commits, and dropped from the local cache only after
the commit."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from hookkeeper.service.app.unit_of_work import sql_unit_of_work
from hookkeeper.service.store.change_feed import CHANNEL
from hookkeeper.service.store.database import Database


class _Boom(Exception):
    pass


async def _fail_after_marking(database: Database, invalidated: list[str], config_id: str) -> None:
    async with sql_unit_of_work(database, invalidated.append) as uow:
        uow.changed(config_id)
        raise _Boom


async def test_invalidates_after_commit_only(database: Database) -> None:
    invalidated: list[str] = []
    seen_inside: list[list[str]] = []
    async with sql_unit_of_work(database, invalidated.append) as uow:
        await uow.conn.execute(text("select 1"))
        uow.changed("b")
        uow.changed("a")
        uow.changed("a")
        seen_inside.append(list(invalidated))
    assert seen_inside == [[]]  # nothing dropped while the transaction was open
    assert sorted(invalidated) == ["a", "b"]


async def test_failed_transaction_invalidates_nothing(database: Database) -> None:
    invalidated: list[str] = []
    with pytest.raises(_Boom):
        await _fail_after_marking(database, invalidated, "a")
    assert invalidated == []


async def _listen(url: str) -> tuple[asyncpg.Connection, asyncio.Queue[str]]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    heard: asyncio.Queue[str] = asyncio.Queue()
    await conn.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[3]))
    return conn, heard


async def _next(heard: asyncio.Queue[str]) -> str:
    return await asyncio.wait_for(heard.get(), timeout=10)


async def test_announces_on_commit_not_on_rollback(postgres_url: str) -> None:
    database = Database(postgres_url, pool_size=2)
    listener, heard = await _listen(postgres_url)
    try:
        with pytest.raises(_Boom):
            await _fail_after_marking(database, [], "rolled-back")
        async with sql_unit_of_work(database, lambda _id: None) as uow:
            uow.changed("committed-2")
            uow.changed("committed-1")
        assert [await _next(heard), await _next(heard)] == ["committed-1", "committed-2"]
        # PostgreSQL delivers notifications in commit order, so the rolled-back
        # one would have arrived first; nothing else is pending either.
        await listener.execute("select 1")
        assert heard.empty()
    finally:
        await listener.close()
        await database.close()
