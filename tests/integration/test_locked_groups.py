"""Locked groups (store/locked_groups.py): updates, deletes and refreshes of
concurrent callers share one transaction on PostgreSQL, and each still sees
its own row as locked, writes all or nothing, and fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from hookkeeper.service.app.callback_configs import CallbackConfigs
from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.app.secret_rotation import SecretRotation
from hookkeeper.service.crypto.keyring import Keyring
from hookkeeper.service.domain.callback_config import ConfigFields
from hookkeeper.service.domain.errors import NotFound
from hookkeeper.service.domain.names import ConfigName
from hookkeeper.service.store.database import Database
from hookkeeper.service.store.locked_groups import LockedGroups
from tests.support.clock import FakeClock

pytestmark = pytest.mark.postgres

FIELDS = ConfigFields("https://hooks.example.com/a", "api-key", "ops@example.com", 30)


@pytest.fixture
async def ctx(postgres_url: str, keyring: Keyring, clock: FakeClock) -> AsyncIterator[AppContext]:
    database = Database(postgres_url, pool_size=4)
    yield AppContext(database, keyring, Policy(), clock)
    await database.close()


def _groups(ctx: AppContext) -> LockedGroups:
    assert ctx.locked_groups is not None
    return ctx.locked_groups


async def _create(ctx: AppContext, count: int) -> list[ConfigName]:
    configs = CallbackConfigs(ctx)
    return [(await configs.create("acme", FIELDS)).config.name for _ in range(count)]


async def test_concurrent_updates_share_transactions_and_all_apply(ctx: AppContext) -> None:
    names = await _create(ctx, 20)
    configs = CallbackConfigs(ctx)
    updated = await asyncio.gather(
        *(
            configs.update(n, ConfigFields(contact_email=f"n{i}@example.com"), ["contact_email"])
            for i, n in enumerate(names)
        )
    )
    assert [u.contact_email for u in updated] == [f"n{i}@example.com" for i in range(20)]
    stored = [(await configs.get(n)).contact_email for n in names]
    assert stored == [f"n{i}@example.com" for i in range(20)]
    groups = _groups(ctx)
    assert groups.members_run == 20
    assert groups.groups_run < 20, groups.groups_run  # the first alone, the rest together


async def test_a_missing_configuration_fails_alone(ctx: AppContext) -> None:
    names = await _create(ctx, 3)
    missing = ConfigName("acme", "no-such-config")
    configs = CallbackConfigs(ctx)
    results = await asyncio.gather(
        *(configs.delete(n) for n in [names[0], missing, names[1], names[2]]),
        return_exceptions=True,
    )
    assert isinstance(results[1], NotFound)
    assert [results[0], results[2], results[3]] == [None, None, None]
    async with ctx.database.read() as conn:
        assert (await conn.execute(text("select count(*) from callback_configs"))).scalar() == 0


async def test_a_write_that_fails_in_the_database_fails_alone(ctx: AppContext) -> None:
    names = await _create(ctx, 6)

    async def set_timeout(name: ConfigName, seconds: int) -> None:
        async with ctx.locked_unit_of_work(name.partner_id, name.config_id) as uow:
            assert uow.record is not None
            await uow.configs.update_config(uow.record.id, {"request_timeout_seconds": seconds})
            uow.changed(uow.record.id)

    # 2**40 does not fit the integer column: only the database says no.
    seconds = [7, 8, 2**40, 9, 10, 11]
    results = await asyncio.gather(
        *(set_timeout(n, s) for n, s in zip(names, seconds, strict=True)),
        return_exceptions=True,
    )
    assert isinstance(results[2], DBAPIError), results
    assert [r for i, r in enumerate(results) if i != 2] == [None] * 5
    configs = CallbackConfigs(ctx)
    stored = [(await configs.get(n)).request_timeout_seconds for n in names]
    assert stored == [7, 8, 30, 9, 10, 11]


async def test_refreshes_from_two_replicas_serialise_and_never_leave_three(
    ctx: AppContext, postgres_url: str, keyring: Keyring, clock: FakeClock
) -> None:
    other_database = Database(postgres_url, pool_size=4)
    other = AppContext(other_database, keyring, Policy(), clock)
    try:
        (name,) = await _create(ctx, 1)
        here, there = SecretRotation(ctx), SecretRotation(other)
        results = await asyncio.gather(
            *((here if i % 2 else there).refresh(name, keep_existing=True) for i in range(12))
        )
        assert len({r.secret for r in results}) == 12
        async with ctx.database.read() as conn:
            count = (await conn.execute(text("select count(*) from callback_secrets"))).scalar()
        assert count == 2  # the newest and the one it overlaps; never three
    finally:
        await other_database.close()
