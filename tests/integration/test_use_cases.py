"""Use cases over a real database: SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from hookkeeper.service.app.callback_configs import CallbackConfigs
from hookkeeper.service.app.context import AppContext
from hookkeeper.service.app.key_rotation import rotate_keys
from hookkeeper.service.app.secret_rotation import OpenedSecrets, SecretRotation
from hookkeeper.service.crypto.keyring import Keyring, generate_key_entry
from hookkeeper.service.domain import signing
from hookkeeper.service.domain.callback_config import ConfigFields
from hookkeeper.service.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from hookkeeper.service.domain.names import ConfigName
from hookkeeper.service.store import callback_configs as store
from hookkeeper.service.store.tables import callback_secrets
from tests.support.clock import FakeClock

FIELDS = ConfigFields("https://testcallbackurl.com", "newapikey", "partner@email.com", 50)


async def test_create_get_list_update_delete(app_context: AppContext, clock: FakeClock) -> None:
    configs = CallbackConfigs(app_context)
    created = await configs.create("acme", FIELDS)
    assert len(created.secret) == 24
    config = created.config
    assert config.request_timeout_seconds == 50
    assert config.secret_expire_time == clock.now + timedelta(days=365)
    assert await configs.get(config.name) == config

    clock.advance(timedelta(seconds=1))
    second = (
        await configs.create("acme", ConfigFields("https://b.example.com", "k", "b@e.co"))
    ).config
    assert second.request_timeout_seconds == 60
    page, token = await configs.list_page("acme", 1, "")
    assert [c.name for c in page] == [config.name] and token
    page, token = await configs.list_page("acme", 1, token)
    assert [c.name for c in page] == [second.name] and token == ""

    clock.advance(timedelta(seconds=1))
    updated = await configs.update(
        config.name, ConfigFields(contact_email="ops@acme.com", request_timeout_seconds=7), []
    )
    assert (updated.contact_email, updated.request_timeout_seconds) == ("ops@acme.com", 7)
    assert updated.callback_url == FIELDS.callback_url
    assert updated.update_time == clock.now and updated.create_time == config.create_time
    assert await configs.get(config.name) == updated  # what Update returned is what is stored

    await configs.delete(config.name)
    with pytest.raises(NotFound):
        await configs.get(config.name)
    with pytest.raises(NotFound):
        await configs.delete(config.name)


async def test_bad_input_changes_nothing(app_context: AppContext) -> None:
    configs = CallbackConfigs(app_context)
    with pytest.raises(InvalidArgument):
        await configs.create("acme", ConfigFields("http://x", "", "bad", 0))
    assert (await configs.list_page("acme", 0, ""))[0] == []
    created = (await configs.create("acme", FIELDS)).config
    with pytest.raises(InvalidArgument) as caught:
        await configs.update(created.name, ConfigFields(callback_url="nope", contact_email="x"), [])
    assert {v.field for v in caught.value.violations} == {
        "callback_config.callback_url",
        "callback_config.contact_email",
    }
    assert await configs.get(created.name) == created


async def test_other_partner_sees_not_found(app_context: AppContext) -> None:
    configs = CallbackConfigs(app_context)
    rotation = SecretRotation(app_context)
    mine = (await configs.create("acme", FIELDS)).config
    theirs = ConfigName("globex", mine.name.config_id)
    for call in (
        configs.get(theirs),
        configs.delete(theirs),
        configs.update(theirs, ConfigFields(contact_email="a@b.co"), []),
        rotation.refresh(theirs, keep_existing=False),
        rotation.sign(theirs, b"{}", None),
    ):
        with pytest.raises(NotFound) as caught:
            await call
        assert str(caught.value) == f"{theirs} not found"
    assert await configs.get(mine.name) == mine


async def test_refresh_keep_then_sign_with_both(app_context: AppContext, clock: FakeClock) -> None:
    configs = CallbackConfigs(app_context)
    rotation = SecretRotation(app_context)
    created = await configs.create("acme", FIELDS)
    clock.advance(timedelta(days=10))
    refreshed = await rotation.refresh(created.config.name, keep_existing=True)
    assert refreshed.previous_secret_expire_time == clock.now + timedelta(days=3)
    assert refreshed.secret_expire_time == clock.now + timedelta(days=365)
    assert (
        await configs.get(created.config.name)
    ).secret_expire_time == refreshed.secret_expire_time

    signed = await rotation.sign(created.config.name, b"{}", None)
    assert signed.header == signing.sign(
        [refreshed.secret, created.secret], signed.timestamp, b"{}"
    )

    clock.advance(timedelta(days=3))
    signed = await rotation.sign(created.config.name, b"{}", None)
    assert signed.header == signing.sign([refreshed.secret], signed.timestamp, b"{}")


async def test_a_batch_reuses_its_signing_secrets_only_while_they_hold(
    app_context: AppContext, clock: FakeClock
) -> None:
    """The dispatcher's batch cache (OpenedSecrets) picks the signing secrets
    again at the moment the previous secret retires, not a moment later."""
    configs = CallbackConfigs(app_context)
    rotation = SecretRotation(app_context)
    created = await configs.create("acme", FIELDS)
    clock.advance(timedelta(days=10))  # the refresh's secret is the newer one
    refreshed = await rotation.refresh(created.config.name, keep_existing=True)
    async with app_context.database.read() as conn:
        records = (
            await store.live_secrets(conn, "acme", created.config.name.config_id, clock.now)
        )[1]
    opened = OpenedSecrets()

    def sign() -> str:
        signed = rotation.sign_with(created.config.name, "", records, b"{}", clock.now, "", opened)
        return signed.header

    both = [refreshed.secret, created.secret]
    assert sign() == signing.sign(both, signing.epoch_millis(clock.now), b"{}")
    assert len(opened) == 2
    clock.advance(timedelta(days=3) - timedelta(microseconds=1))
    assert sign() == signing.sign(both, signing.epoch_millis(clock.now), b"{}")
    clock.advance(timedelta(microseconds=1))  # the previous secret retires now
    assert sign() == signing.sign([refreshed.secret], signing.epoch_millis(clock.now), b"{}")


async def test_refresh_without_keep_ends_old_secret_now(app_context: AppContext) -> None:
    configs = CallbackConfigs(app_context)
    rotation = SecretRotation(app_context)
    created = await configs.create("acme", FIELDS)
    refreshed = await rotation.refresh(created.config.name, keep_existing=False)
    signed = await rotation.sign(created.config.name, b"x", None)
    assert signed.header == signing.sign([refreshed.secret], signed.timestamp, b"x")
    async with app_context.database.read() as conn:
        rows = (await conn.execute(select(callback_secrets))).all()
    assert len(rows) == 1  # the ended secret is gone, not kept as ciphertext


async def test_expired_secret_cannot_sign_or_be_kept(
    app_context: AppContext, clock: FakeClock
) -> None:
    configs = CallbackConfigs(app_context)
    rotation = SecretRotation(app_context)
    name = (await configs.create("acme", FIELDS)).config.name
    clock.advance(timedelta(days=366))
    with pytest.raises(FailedPrecondition):
        await rotation.sign(name, b"{}", None)
    with pytest.raises(FailedPrecondition):
        await rotation.refresh(name, keep_existing=True)
    refreshed = await rotation.refresh(name, keep_existing=False)
    signed = await rotation.sign(name, b"{}", None)
    assert signed.header == signing.sign([refreshed.secret], signed.timestamp, b"{}")


async def test_concurrent_refreshes_serialise_and_never_leave_three(
    app_context: AppContext,
) -> None:
    configs = CallbackConfigs(app_context)
    rotation = SecretRotation(app_context)
    name = (await configs.create("acme", FIELDS)).config.name
    results = await asyncio.gather(*(rotation.refresh(name, keep_existing=True) for _ in range(8)))
    assert len({r.secret for r in results}) == 8
    signed = await rotation.sign(name, b"{}", None)
    assert len(signed.header.removeprefix("sha256=").split(",")) == 2
    async with app_context.database.read() as conn:
        count = (await conn.execute(text("select count(*) from callback_secrets"))).scalar_one()
    assert count == 2


async def test_no_plaintext_secret_or_api_key_in_the_database(
    app_context: AppContext,
) -> None:
    configs = CallbackConfigs(app_context)
    api_key = "api-key-" + "Z" * 40
    created = await configs.create(
        "acme", ConfigFields(FIELDS.callback_url, api_key, FIELDS.contact_email)
    )
    refreshed = await SecretRotation(app_context).refresh(created.config.name, keep_existing=True)
    dump = await _dump_all_tables(app_context)
    for plaintext in (api_key, created.secret, refreshed.secret):
        assert plaintext.encode() not in dump


async def _dump_all_tables(ctx: AppContext) -> bytes:
    out = bytearray()
    async with ctx.database.read() as conn:
        for table in ("partners", "callback_configs", "callback_secrets"):
            for row in await conn.execute(text(f"select * from {table}")):
                for value in row:
                    out += value if isinstance(value, bytes) else str(value).encode()
    return bytes(out)


async def test_key_rotation_reseals_everything_and_is_repeatable(
    app_context: AppContext, keyring_entry: str
) -> None:
    configs = CallbackConfigs(app_context)
    created = await configs.create("acme", FIELDS)
    new_ring = Keyring.parse(keyring_entry + "," + generate_key_entry())
    rotated = AppContext(app_context.database, new_ring, app_context.policy, app_context.clock)
    assert await rotate_keys(rotated) == 2  # one API key, one secret
    assert await rotate_keys(rotated) == 0
    async with rotated.database.read() as conn:
        key_ids = {r[0] for r in await conn.execute(text("select key_id from callback_secrets"))}
    assert key_ids == {new_ring.primary_key_id}
    signed = await SecretRotation(rotated).sign(created.config.name, b"{}", None)
    assert signed.header == signing.sign([created.secret], signed.timestamp, b"{}")
