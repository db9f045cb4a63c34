"""Group commit (store/group_commit.py): blind units of work of concurrent
callers commit together, each still all or nothing on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from hookkeeper.service.app.unit_of_work import sql_blind_unit_of_work
from hookkeeper.service.domain.errors import Unavailable
from hookkeeper.service.store.database import Database
from hookkeeper.service.store.group_commit import GroupCommit
from hookkeeper.service.store.records import SecretRecord
from tests.support.records import config_and_secret

pytestmark = pytest.mark.postgres


async def _create(
    database: Database, config_id: str, partner_id: str, *, orphan: bool = False
) -> None:
    config, secret = config_and_secret(config_id, partner_id)
    if orphan:
        secret = SecretRecord(**{**secret.__dict__, "callback_config_id": "no-such-config"})
    async with sql_blind_unit_of_work(database) as uow:
        await uow.configs.ensure_partner(partner_id, config.create_time)
        await uow.configs.insert_config(config)
        await uow.configs.insert_secret(secret)


async def _stored(database: Database, table: str) -> set[str]:
    async with database.read() as conn:
        return {row[0] for row in await conn.execute(text(f"SELECT id FROM {table}"))}


def _groups(database: Database) -> GroupCommit:
    assert database.group_commit is not None
    return database.group_commit


async def test_concurrent_creates_commit_in_fewer_round_trips(postgres_url: str) -> None:
    database = Database(postgres_url, pool_size=2)
    try:
        await asyncio.gather(*(_create(database, f"c{i}", f"p{i % 3}") for i in range(40)))
        assert await _stored(database, "callback_configs") == {f"c{i}" for i in range(40)}
        assert await _stored(database, "callback_secrets") == {f"s-c{i}" for i in range(40)}
        groups = _groups(database)
        assert groups.statements_sent == 40
        # The first goes at once, the others wait for it and go together.
        assert groups.groups_sent < 10, groups.groups_sent
    finally:
        await database.close()


async def test_a_bad_create_fails_alone_and_the_others_commit(postgres_url: str) -> None:
    database = Database(postgres_url, pool_size=2)
    try:
        results = await asyncio.gather(
            *(_create(database, f"c{i}", "p", orphan=i == 4) for i in range(10)),
            return_exceptions=True,
        )
        # The error it would have had alone, mapped as any statement's is.
        assert isinstance(results[4], IntegrityError)
        assert [r for i, r in enumerate(results) if i != 4] == [None] * 9
        assert await _stored(database, "callback_configs") == {f"c{i}" for i in range(10)} - {"c4"}
    finally:
        await database.close()


async def test_a_caller_cancelled_before_its_group_is_sent_commits_nothing(
    postgres_url: str,
) -> None:
    database = Database(postgres_url, pool_size=2)
    blocker = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        # An uncommitted row with the same key holds the first group's insert
        # (ON CONFLICT waits for the other transaction's outcome).
        holding = blocker.transaction()
        await holding.start()
        await blocker.execute("INSERT INTO partners (id, create_time) VALUES ('held', now())")
        first = asyncio.create_task(_create(database, "c-first", "held"))
        await _until(lambda: _groups(database).groups_sent == 1)
        second = asyncio.create_task(_create(database, "c-second", "other"))
        await _until(lambda: len(_groups(database)._queue) == 1)
        second.cancel()
        await holding.rollback()
        await first
        with pytest.raises(asyncio.CancelledError):
            await second
        await _groups(database).close()
        assert await _stored(database, "callback_configs") == {"c-first"}
        assert _groups(database).groups_sent == 1  # the cancelled one never went
    finally:
        await blocker.close()
        await database.close()


async def test_a_database_down_is_unavailable_for_every_caller(unused_tcp_port: int) -> None:
    database = Database(
        f"postgresql+asyncpg://postgres@127.0.0.1:{unused_tcp_port}/none", connect_timeout=1
    )
    try:
        results = await asyncio.gather(
            *(_create(database, f"c{i}", "p") for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, Unavailable) for r in results), results
        assert "retry later" in str(results[0])
    finally:
        await database.close()


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 (state of another task, no event to wait on)
            await asyncio.sleep(0.01)
