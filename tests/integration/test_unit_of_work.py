"""The unit of work: what a transaction marks as changed is announced on the
change feed only if it commits, and dropped from the local cache only after
the commit."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError

from hookkeeper.service.app.unit_of_work import sql_unit_of_work
from hookkeeper.service.store.change_feed import CHANNEL
from hookkeeper.service.store.database import Database
from hookkeeper.service.store.records import SecretRecord
from tests.support.records import config_and_secret


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


async def _count(database: Database, sql: str, value: str) -> int:
    async with database.read() as conn:
        return int(await conn.scalar(text(sql), {"v": value}) or 0)


async def test_queued_writes_go_as_one_statement_without_begin(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(postgres_url, pool_size=1)
    sent: list[str] = []
    begun: list[object] = []
    # The pool's one connection made first: connecting runs queries of its own.
    assert await _count(database, "SELECT count(*) FROM partners WHERE id=:v", "p-one") == 0
    event.listen(
        database.engine.sync_engine,
        "before_cursor_execute",
        lambda _conn, _cursor, statement, *_rest: sent.append(statement),
    )
    real_transaction = asyncpg.Connection.transaction

    def transaction(self: asyncpg.Connection, **options: object) -> object:
        begun.append(options)
        return real_transaction(self, **options)

    monkeypatch.setattr(asyncpg.Connection, "transaction", transaction)
    try:
        config, secret = config_and_secret("c-one", "p-one")
        async with sql_unit_of_work(database, lambda _id: None) as uow:
            await uow.configs.ensure_partner("p-one", config.create_time)
            await uow.configs.insert_config(config)
            await uow.configs.insert_secret(secret)
            uow.changed("c-one")
        assert len(sent) == 1, sent
        assert sent[0].startswith("WITH w0 AS (INSERT INTO partners")
        assert begun == []  # no BEGIN, no COMMIT: one statement is atomic alone
        sql = "SELECT count(*) FROM callback_secrets WHERE id=:v"
        assert await _count(database, sql, "s-c-one") == 1
    finally:
        await database.close()


async def test_one_failing_part_leaves_nothing_of_the_others(postgres_url: str) -> None:
    database = Database(postgres_url, pool_size=1)
    try:
        config, secret = config_and_secret("c-two", "p-two")
        orphan = SecretRecord(**{**secret.__dict__, "callback_config_id": "no-such-config"})

        async def create_with_orphan() -> None:
            async with sql_unit_of_work(database, lambda _id: None) as uow:
                await uow.configs.ensure_partner("p-two", config.create_time)
                await uow.configs.insert_config(config)
                await uow.configs.insert_secret(orphan)

        # Mapped by SQLAlchemy as any other statement's error would be.
        with pytest.raises(IntegrityError):
            await create_with_orphan()
        assert await _count(database, "SELECT count(*) FROM partners WHERE id=:v", "p-two") == 0
        assert (
            await _count(database, "SELECT count(*) FROM callback_configs WHERE id=:v", "c-two")
            == 0
        )
    finally:
        await database.close()
