"""The audit trail over a real database (SQLite and PostgreSQL): events
recorded with the changes they describe, scoped listing, counted signatures,
and verification that names an altered or deleted row."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from hookkeeper.service.app import caller
from hookkeeper.service.app.audit import AuditTrail
from hookkeeper.service.app.callback_configs import CallbackConfigs
from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.app.key_rotation import rotate_keys
from hookkeeper.service.app.secret_rotation import SecretRotation
from hookkeeper.service.crypto.keyring import Keyring, generate_key_entry
from hookkeeper.service.domain import audit
from hookkeeper.service.domain.callback_config import ConfigFields
from hookkeeper.service.domain.errors import InvalidArgument
from hookkeeper.service.domain.principals import Principal
from hookkeeper.service.store.database import Database
from tests.support.clock import FakeClock

FIELDS = ConfigFields("https://testcallbackurl.com", "newapikey-SECRET", "partner@email.com", 50)
GATEWAY = Principal("gateway", ("*",), ("*",))
ACME_ONLY = Principal("acme-reader", ("*",), ("acme*",))


async def _scenario(ctx: AppContext, clock: FakeClock) -> tuple[str, str]:
    """Creates a configuration for acme and one for globex, refreshes and signs."""
    configs, rotation = CallbackConfigs(ctx), SecretRotation(ctx)
    with caller.acting_as(GATEWAY):
        acme = await configs.create("acme", FIELDS)
        globex = await configs.create("globex", FIELDS)
        clock.advance(timedelta(seconds=5))
        refreshed = await rotation.refresh(acme.config.name, keep_existing=False)
        for _ in range(3):
            await rotation.sign(acme.config.name, b"{}", None)
    # Signatures are counted, not written, until their minute is over.
    trail = AuditTrail(ctx)
    assert await trail.flush_signs() == 0
    clock.advance(timedelta(minutes=1))
    assert await trail.flush_signs() == 1
    assert await trail.seal_pending() == 4
    secrets = {acme.secret, globex.secret, refreshed.secret, FIELDS.api_key}
    rows = await _raw_rows(ctx)
    for secret in secrets:
        assert secret not in rows
    return str(acme.config.name), str(globex.config.name)


async def _raw_rows(ctx: AppContext) -> str:
    async with ctx.database.read() as conn:
        return repr((await conn.execute(text("SELECT * FROM audit_events"))).all())


async def test_events_record_changes_and_counted_signatures(
    app_context: AppContext, clock: FakeClock
) -> None:
    acme, globex = await _scenario(app_context, clock)
    trail = AuditTrail(app_context)
    events, token = await trail.list_page(GATEWAY, "acme", "", 0, "")
    assert token == ""
    assert [(e.action, e.resource, e.count) for e in events] == [
        (audit.SECRET_SIGN, acme, 3),
        (audit.SECRET_REFRESH, acme, 1),
        (audit.CONFIG_CREATE, acme, 1),
    ]
    assert {e.actor for e in events} == {"gateway"}
    assert {e.outcome for e in events} == {audit.OK}
    # Paging, newest first, and a filter by resource and time.
    first, token = await trail.list_page(GATEWAY, None, "", 2, "")
    second, token2 = await trail.list_page(GATEWAY, None, "", 2, token)
    assert [e.seq for e in first + second] == [4, 3, 2, 1] and token2 == ""
    ids = [e.id for e in first + second]
    assert ids == sorted(ids, reverse=True)
    since = (clock.now - timedelta(minutes=1)).isoformat()
    only, _ = await trail.list_page(
        GATEWAY, None, f'resource = "{acme}" AND time >= "{since}"', 0, ""
    )
    assert [e.action for e in only] == [audit.SECRET_REFRESH]
    with pytest.raises(InvalidArgument):
        await trail.list_page(GATEWAY, None, "", 0, "not-a-token")
    checked, problems = await trail.verify()
    assert (checked, problems) == (4, [])
    assert globex


async def test_list_of_every_partner_sees_only_permitted_partners(
    app_context: AppContext, clock: FakeClock, keyring_entry: str
) -> None:
    await _scenario(app_context, clock)
    # An event of no partner: a master-key rotation.
    rotated = AppContext(
        app_context.database,
        Keyring.parse(f"{keyring_entry},{generate_key_entry()}"),
        app_context.policy,
        clock,
    )
    assert await rotate_keys(rotated) > 0
    trail = AuditTrail(app_context)
    everything, _ = await trail.list_page(GATEWAY, None, "", 0, "")
    assert {e.partner_id for e in everything} == {"acme", "globex", None}
    scoped, _ = await trail.list_page(ACME_ONLY, None, "", 0, "")
    assert scoped and {e.partner_id for e in scoped} == {"acme"}
    # Case matters even where the database's LIKE ignores it.
    upper, _ = await trail.list_page(Principal("x", ("*",), ("ACME",)), None, "", 0, "")
    assert upper == []


async def test_verify_names_an_altered_and_a_deleted_row(
    app_context: AppContext, clock: FakeClock
) -> None:
    await _scenario(app_context, clock)
    trail = AuditTrail(app_context)
    async with app_context.database.write() as conn:
        await conn.execute(text("UPDATE audit_events SET actor = 'nobody' WHERE seq = 2"))
    checked, problems = await trail.verify()
    assert checked == 4
    assert [p.seq for p in problems] == [2]
    async with app_context.database.write() as conn:
        await conn.execute(text("UPDATE audit_events SET actor = 'gateway' WHERE seq = 2"))
        await conn.execute(text("DELETE FROM audit_events WHERE seq = 3"))
    _, problems = await trail.verify()
    assert [p.seq for p in problems] == [4]
    assert "3..3 are missing" in str(problems[0])


async def test_denied_calls_are_recorded(app_context: AppContext) -> None:
    trail = AuditTrail(app_context)
    method = "/hookkeeper.notifications.v1.SecretRotationService/RefreshSecret"
    await trail.denied("publisher", method, "partners/acme/callbackConfigs/x", "acme")
    (event,) = (await trail.list_page(GATEWAY, "acme", "", 0, ""))[0]
    assert (event.actor, event.action, event.outcome) == (
        "publisher",
        audit.CALL_DENIED,
        audit.DENIED,
    )
    # A hostile caller chooses the resource string; it is stored bounded.
    await trail.denied("publisher", method, "partners/acme/" + "x" * 100_000, "acme")
    (longest,), _ = await trail.list_page(GATEWAY, "acme", "", 1, "")
    assert len(longest.resource) == 512


async def test_concurrent_appends_keep_one_gapless_chain(
    app_context: AppContext, clock: FakeClock
) -> None:
    configs = CallbackConfigs(app_context)
    trail = AuditTrail(app_context)
    with caller.acting_as(GATEWAY):
        # Sealers race the writers and each other; the chain stays whole.
        await asyncio.gather(
            *(configs.create(f"p{i % 3}", FIELDS) for i in range(12)),
            *(trail.seal_pending() for _ in range(4)),
        )
    checked, problems = await trail.verify()
    assert (checked, problems) == (12, [])
    async with app_context.database.read() as conn:
        seqs = (await conn.execute(text("SELECT seq FROM audit_events ORDER BY seq"))).all()
    assert [s for (s,) in seqs] == list(range(1, 13))


class _StopDuringFirstSeal(AuditTrail):
    """An audit trail whose first sealing round sees the stop arrive midway,
    as SIGTERM can at any moment of a round."""

    def __init__(self, ctx: AppContext, stop: asyncio.Event) -> None:
        super().__init__(ctx)
        self._stop = stop
        self.rounds = 0

    async def seal_pending(self) -> int:
        self.rounds += 1
        if self.rounds == 1:
            self._stop.set()
        return await super().seal_pending()


async def test_a_stop_during_a_round_still_writes_every_counted_signature(
    app_context: AppContext, clock: FakeClock
) -> None:
    configs, rotation = CallbackConfigs(app_context), SecretRotation(app_context)
    with caller.acting_as(GATEWAY):
        created = await configs.create("acme", FIELDS)
        for _ in range(2):
            await rotation.sign(created.config.name, b"{}", None)
    stop = asyncio.Event()
    trail = _StopDuringFirstSeal(app_context, stop)
    # The first round (no stop yet) seals the create but keeps the counts of
    # this unfinished minute; the stop arrives during it.
    await asyncio.wait_for(trail.run(stop), timeout=30)
    assert trail.rounds == 2  # one more round after the stop was seen
    events, _ = await trail.list_page(GATEWAY, "acme", "", 0, "")
    assert [(e.action, e.count) for e in events] == [
        (audit.SECRET_SIGN, 2),
        (audit.CONFIG_CREATE, 1),
    ]
    assert all(e.seq is not None for e in events)


async def _sign_rows(ctx: AppContext) -> int:
    async with ctx.database.read() as conn:
        found = await conn.scalar(
            text("SELECT count(*) FROM audit_events WHERE action = :a"), {"a": audit.SECRET_SIGN}
        )
    return int(found or 0)


def _count_many(ctx: AppContext, n: int, *, last_partner: str = "acme") -> None:
    trail = AuditTrail(ctx)
    with caller.acting_as(GATEWAY):
        for i in range(n):
            partner = last_partner if i == n - 1 else "acme"
            trail.count_sign(f"partners/{partner}/callbackConfigs/c-{i}", partner)


async def test_a_minute_of_many_configurations_is_written_whole_in_chunks(
    app_context: AppContext, clock: FakeClock
) -> None:
    # More counts than one statement writes (_FLUSH_CHUNK): every one arrives.
    _count_many(app_context, 1_234)
    clock.advance(timedelta(minutes=1))
    assert await AuditTrail(app_context).flush_signs() == 1_234
    assert await _sign_rows(app_context) == 1_234
    assert app_context.sign_tally.counts == {}


async def test_a_failed_chunk_writes_no_count_and_keeps_them_all(
    postgres_url: str, keyring: Keyring, clock: FakeClock
) -> None:
    # PostgreSQL only: SQLite does not enforce the partner column's length,
    # which makes the last chunk fail here after two chunks were written.
    database = Database(postgres_url, pool_size=2)
    try:
        ctx = AppContext(database, keyring, Policy(), clock)
        _count_many(ctx, 1_201, last_partner="p" * 200)
        clock.advance(timedelta(minutes=1))
        with pytest.raises(DBAPIError):
            await AuditTrail(ctx).flush_signs()
        assert await _sign_rows(ctx) == 0
        assert len(ctx.sign_tally.counts) == 1_201
    finally:
        await database.close()
