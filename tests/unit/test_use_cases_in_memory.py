"""Write use cases over an in-memory unit of work: no database, so these run
in milliseconds and pin the use cases' own logic (what they change, what they
mark as changed, that a refused request changes nothing). The same use cases
run against SQLite and PostgreSQL in tests/integration/test_use_cases.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest

from hookkeeper.service.app import audit as trail
from hookkeeper.service.app.callback_configs import CallbackConfigs
from hookkeeper.service.app.context import AppContext, Policy, api_key_aad, secret_aad
from hookkeeper.service.app.key_rotation import rotate_keys
from hookkeeper.service.app.secret_rotation import SecretRotation
from hookkeeper.service.crypto.keyring import Keyring, generate_key_entry
from hookkeeper.service.domain import audit
from hookkeeper.service.domain.callback_config import ConfigFields
from hookkeeper.service.domain.errors import InvalidArgument, NotFound
from hookkeeper.service.domain.names import ConfigName
from hookkeeper.service.store.database import Database
from hookkeeper.service.store.records import ConfigRecord, SecretRecord
from tests.support.clock import FakeClock
from tests.support.fake_uow import FakeUnitsOfWork

PARTNER = "acme"
CONFIG = "cfg-1"
NAME = ConfigName(PARTNER, CONFIG)
# Never opened: every write goes through the in-memory unit of work.
_NO_DATABASE = cast(Database, object())


def _context(keyring: Keyring, clock: FakeClock, units: FakeUnitsOfWork) -> AppContext:
    return AppContext(_NO_DATABASE, keyring, Policy(), clock, units_of_work=units)


def _seed(units: FakeUnitsOfWork, keyring: Keyring, clock: FakeClock) -> None:
    now = clock()
    units.configs.configs[CONFIG] = ConfigRecord(
        id=CONFIG,
        partner_id=PARTNER,
        callback_url="https://hooks.example.com/in",
        contact_email="ops@example.com",
        request_timeout_seconds=30,
        api_key=keyring.seal(b"the-api-key", api_key_aad(CONFIG)),
        secret_expire_time=now + timedelta(days=365),
        create_time=now,
        update_time=now,
    )
    units.configs.secrets["s-1"] = SecretRecord(
        id="s-1",
        callback_config_id=CONFIG,
        sealed=keyring.seal(b"first-secret", secret_aad("s-1", CONFIG)),
        create_time=now,
        expire_time=now + timedelta(days=365),
        retire_time=None,
    )


@pytest.fixture(autouse=True)
def audit_drafts(monkeypatch: pytest.MonkeyPatch) -> list[audit.Draft]:
    """The audit events the use cases record (the trail itself is SQL: its
    own tests run on the databases)."""
    drafts: list[audit.Draft] = []

    async def record(_ctx: AppContext, _conn: Any, *given: audit.Draft, **_: Any) -> None:
        drafts.extend(given)

    monkeypatch.setattr(trail, "record", record)
    return drafts


@pytest.fixture
def units(keyring: Keyring, clock: FakeClock) -> FakeUnitsOfWork:
    """An in-memory store holding one configuration with one secret."""
    made = FakeUnitsOfWork()
    _seed(made, keyring, clock)
    return made


async def test_refresh_keeping_the_old_secret(
    units: FakeUnitsOfWork, keyring: Keyring, clock: FakeClock, audit_drafts: list[audit.Draft]
) -> None:
    clock.advance(timedelta(days=10))
    refreshed = await SecretRotation(_context(keyring, clock, units)).refresh(
        NAME, keep_existing=True
    )
    secrets = units.configs.secrets
    assert len(secrets) == 2
    assert secrets["s-1"].retire_time == clock() + timedelta(days=3)
    new = next(s for s in secrets.values() if s.id != "s-1")
    assert keyring.open(new.sealed, secret_aad(new.id, CONFIG)).decode() == refreshed.secret
    assert units.configs.configs[CONFIG].secret_expire_time == new.expire_time
    assert units.committed_changes == [{CONFIG}]
    assert [d.action for d in audit_drafts] == [audit.SECRET_REFRESH]


async def test_refresh_ending_the_old_secret_deletes_it(
    units: FakeUnitsOfWork, keyring: Keyring, clock: FakeClock
) -> None:
    clock.advance(timedelta(days=10))
    await SecretRotation(_context(keyring, clock, units)).refresh(NAME, keep_existing=False)
    # It can never sign again, so its ciphertext does not linger.
    assert "s-1" not in units.configs.secrets
    assert len(units.configs.secrets) == 1
    assert units.committed_changes == [{CONFIG}]


async def test_refresh_of_another_partners_config_changes_nothing(
    units: FakeUnitsOfWork, keyring: Keyring, clock: FakeClock
) -> None:
    before = (dict(units.configs.configs), dict(units.configs.secrets))
    with pytest.raises(NotFound):
        await SecretRotation(_context(keyring, clock, units)).refresh(
            ConfigName("other", CONFIG), keep_existing=True
        )
    assert (units.configs.configs, units.configs.secrets) == before
    assert units.committed_changes == []


async def test_update_marks_the_config_changed(
    units: FakeUnitsOfWork, keyring: Keyring, clock: FakeClock, audit_drafts: list[audit.Draft]
) -> None:
    clock.advance(timedelta(minutes=5))
    configs = CallbackConfigs(_context(keyring, clock, units))
    updated = await configs.update(
        NAME, ConfigFields(contact_email="new@example.com"), ["contact_email"]
    )
    assert updated.contact_email == "new@example.com"
    assert units.configs.configs[CONFIG].contact_email == "new@example.com"
    assert units.configs.configs[CONFIG].update_time == clock()
    assert units.committed_changes == [{CONFIG}]
    assert [d.action for d in audit_drafts] == [audit.CONFIG_UPDATE]


async def test_bad_update_changes_nothing(
    units: FakeUnitsOfWork, keyring: Keyring, clock: FakeClock, audit_drafts: list[audit.Draft]
) -> None:
    before = dict(units.configs.configs)
    configs = CallbackConfigs(_context(keyring, clock, units))
    with pytest.raises(InvalidArgument):
        await configs.update(NAME, ConfigFields(contact_email="not an address"), ["contact_email"])
    assert units.configs.configs == before
    assert units.committed_changes == []
    assert audit_drafts == []


async def test_key_rotation_reseals_and_marks_changed(
    units: FakeUnitsOfWork, keyring_entry: str, clock: FakeClock, audit_drafts: list[audit.Draft]
) -> None:
    rotated = Keyring.parse(f"{keyring_entry},{generate_key_entry()}")
    ctx = _context(rotated, clock, units)
    assert await rotate_keys(ctx) == 2  # the API key and the secret
    config = units.configs.configs[CONFIG]
    secret = units.configs.secrets["s-1"]
    assert {config.api_key.key_id, secret.sealed.key_id} == {rotated.primary_key_id}
    assert rotated.open(config.api_key, api_key_aad(CONFIG)) == b"the-api-key"
    assert rotated.open(secret.sealed, secret_aad("s-1", CONFIG)) == b"first-secret"
    assert units.committed_changes[0] == {CONFIG}
    assert [d.action for d in audit_drafts] == [audit.MASTER_KEY_ROTATE]
    # Nothing is left under the old key: a second run reseals nothing.
    assert await rotate_keys(ctx) == 0
