"""Endpoint health on SQLite and PostgreSQL, in-process: revocation, the
signature scheme's immutability, disable/pause/enable/resume in publish
order, 410 and sustained-failure disabling with one notice, Retry-After
holds, the shared per-second slots and RecoverDeliveries (a scripted sender
stands in for the HTTP hop, which the end-to-end tests cover for real)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from hookkeeper.service.app import endpoint_health
from hookkeeper.service.app.callback_configs import CallbackConfigs
from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.app.delivering import Deliverer, Outcome
from hookkeeper.service.app.notifications import Notifications
from hookkeeper.service.app.secret_rotation import SecretRotation
from hookkeeper.service.app.sending import Answer
from hookkeeper.service.delivery.http import Sender
from hookkeeper.service.domain.callback_config import ConfigFields
from hookkeeper.service.domain.deliveries import DeliveryState
from hookkeeper.service.domain.delivery_names import DeliveryName
from hookkeeper.service.domain.errors import FailedPrecondition, InvalidArgument
from hookkeeper.service.domain.names import parse_config
from hookkeeper.service.store import attempts, delivery_queue
from hookkeeper.service.store.delivery_tables import notification_deliveries
from hookkeeper.service.store.endpoint_tables import config_notices
from hookkeeper.service.store.records import ClaimedDelivery
from tests.support.clock import FakeClock


class ScriptedSender(Sender):
    """Answers from a script (status, Retry-After) instead of the network."""

    def __init__(self, answers: Sequence[tuple[int, str | None]]) -> None:
        super().__init__(allow_insecure=True)
        self.answers = list(answers)
        self.sent: list[Mapping[str, str]] = []

    async def request(
        self, method: str, url: str, *, headers: object, body: bytes | None, timeout_seconds: float
    ) -> Answer:
        self.sent.append(dict(headers))  # type: ignore[call-overload]
        status, retry_after = self.answers.pop(0) if self.answers else (200, None)
        error = "" if status < 300 else f"the callback answered HTTP {status}"
        return Answer(status, 2, error, retry_after)


@pytest.fixture
def ctx(app_context: AppContext) -> AppContext:
    """Local URLs allowed; auto-disable after 2 hours of failures."""
    return AppContext(
        app_context.database,
        app_context.keyring,
        Policy(allow_insecure_callbacks=True, disable_after=timedelta(hours=2)),
        app_context.clock,
    )


async def _config(ctx: AppContext, partner: str, **extra: object) -> str:
    created = await CallbackConfigs(ctx).create(
        partner,
        ConfigFields("http://127.0.0.1:9/hook", "key", "ops@example.com", 5, **extra),  # type: ignore[arg-type]
    )
    return str(created.config.name)


async def _claim(ctx: AppContext, limit: int = 50, owner: str = "t") -> list[ClaimedDelivery]:
    async with ctx.database.write() as conn:
        return await delivery_queue.claim_due(
            conn,
            now=ctx.clock(),
            limit=limit,
            owner=owner,
            token=str(uuid.uuid4()),
            lease_margin=timedelta(seconds=1),
        )


async def _attempt_and_record(ctx: AppContext, sender: ScriptedSender) -> list[Outcome]:
    """One dispatcher round: claim, attempt, record (as Dispatcher._write)."""
    deliverer = Deliverer(ctx, sender, scale=0.0001, owner="t")
    outcomes = [await deliverer.attempt(c) for c in await _claim(ctx)]
    async with ctx.database.write() as conn:
        await attempts.insert_attempts(conn, [o.attempt for o in outcomes])
        await delivery_queue.settle_many(
            conn,
            [
                {
                    "b_id": o.claimed.delivery.id,
                    "b_token": o.claimed.lease_token,
                    "b_state": o.settlement.state,
                    "b_round_failures": o.settlement.round_failures,
                    "b_next": o.settlement.next_attempt_time,
                    "b_error": o.settlement.last_error,
                    "b_now": ctx.clock(),
                }
                for o in outcomes
            ],
        )
        await endpoint_health.after_attempts(conn, outcomes, ctx.clock(), ctx.policy.disable_after)
    return outcomes


async def _notices(ctx: AppContext) -> int:
    async with ctx.database.read() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(config_notices))).scalar_one()
        )


async def _published(
    ctx: AppContext, partner: str, config: str | None, count: int, start: int = 0
) -> list[str]:
    """Subscribes ``config`` (unless None: already subscribed), publishes."""
    notifications = Notifications(ctx, ScriptedSender([]))
    if config is not None:
        await notifications.subscribe(partner, "GuestReviewSubmitted", config)
    ids = []
    for i in range(start, start + count):
        if isinstance(ctx.clock, FakeClock):
            ctx.clock.advance(timedelta(milliseconds=1))  # publish order is time order
        published = await notifications.publish(partner, "GuestReviewSubmitted", f"e-{i}", "{}")
        ids.append(published.deliveries[0].id)
    return ids


async def test_revoke_leaves_one_signature_and_refuses_without_overlap(ctx: AppContext) -> None:
    name = parse_config(await _config(ctx, "p1"))
    rotation = SecretRotation(ctx)
    with pytest.raises(FailedPrecondition):
        await rotation.revoke_previous(name)
    await rotation.refresh(name, keep_existing=True)
    assert (await rotation.sign(name, b"{}", None)).header.count(",") == 1
    revoked = await rotation.revoke_previous(name)
    assert "," not in (await rotation.sign(name, b"{}", None)).header
    assert revoked.secret_expire_time == (await CallbackConfigs(ctx).get(name)).secret_expire_time
    with pytest.raises(FailedPrecondition):
        await rotation.revoke_previous(name)


async def test_scheme_is_kept_and_cannot_change(ctx: AppContext) -> None:
    configs = CallbackConfigs(ctx)
    created = await configs.create(
        "p1",
        ConfigFields(
            "http://127.0.0.1:9/hook",
            "key",
            "ops@example.com",
            5,
            max_deliveries_per_second=7,
            signature_scheme="STANDARD_WEBHOOKS",
        ),
    )
    assert created.secret.startswith("whsec_")
    name = created.config.name
    with pytest.raises(InvalidArgument) as caught:
        await configs.update(
            name, ConfigFields(signature_scheme="EXPEDIA_V2"), ["signature_scheme"]
        )
    assert caught.value.violations[0].field == "callback_config.signature_scheme"
    updated = await configs.update(name, ConfigFields(), ["max_deliveries_per_second"])
    assert updated.max_deliveries_per_second is None
    assert updated.signature_scheme == "STANDARD_WEBHOOKS"
    refreshed = await SecretRotation(ctx).refresh(name, keep_existing=False)
    assert refreshed.secret.startswith("whsec_")


async def test_410_disables_at_once_pauses_and_enable_resumes_in_order(
    ctx: AppContext, clock: FakeClock
) -> None:
    config = await _config(ctx, "p1")
    name = parse_config(config)
    [first] = await _published(ctx, "p1", config, 1)
    sender = ScriptedSender([(410, None), (410, None)])
    # The connectivity check (a GET: a 410 to it disables nothing) and the
    # event (its 410 disables) go in one round.
    await _attempt_and_record(ctx, sender)
    second, third = await _published(ctx, "p1", None, 2, start=1)
    assert await _claim(ctx) == []  # they are paused, not leased
    got = await CallbackConfigs(ctx).get(name)
    assert got.state == "DISABLED"
    assert got.disable_reason is not None and "410" in got.disable_reason
    assert await _notices(ctx) == 1
    notifications = Notifications(ctx, sender)
    log, _ = await notifications.attempts(DeliveryName("p1", None), "", 100, "")
    paused = [a for a in log if a.attempt_number == 0]
    assert {a.delivery_id for a in paused} >= {second, third}
    # Disabled: nothing is claimed; a manual disable changes nothing more.
    clock.advance(timedelta(minutes=1))
    assert await _claim(ctx) == []
    await CallbackConfigs(ctx).disable(name)
    assert await _notices(ctx) == 1
    await CallbackConfigs(ctx).enable(name)
    resumed = await _claim(ctx)
    assert [c.delivery.id for c in resumed] == [first, second, third]
    assert all(c.delivery.round_failures == 0 for c in resumed)


async def test_sustained_failure_disables_after_the_setting(
    ctx: AppContext, clock: FakeClock
) -> None:
    config = await _config(ctx, "p1")
    await _published(ctx, "p1", config, 1)
    sender = ScriptedSender([(200, None)] + [(500, None)] * 50)
    await _attempt_and_record(ctx, sender)  # the GET (200) and the event (500)
    for _ in range(2):
        clock.advance(timedelta(minutes=50))
        await _attempt_and_record(ctx, sender)
        assert (await CallbackConfigs(ctx).get(parse_config(config))).state == "ACTIVE"
    clock.advance(timedelta(minutes=30))  # 130 minutes of failures > 2 hours
    await _attempt_and_record(ctx, sender)
    got = await CallbackConfigs(ctx).get(parse_config(config))
    assert got.state == "DISABLED"
    assert got.disable_reason is not None and "2 hours" in got.disable_reason
    assert await _notices(ctx) == 1


async def test_a_success_restarts_the_failure_count(ctx: AppContext, clock: FakeClock) -> None:
    config = await _config(ctx, "p1")
    await _published(ctx, "p1", config, 1)
    # The GET, then the event fails, fails again 100 minutes on, then succeeds.
    await _attempt_and_record(ctx, ScriptedSender([(200, None), (500, None)]))
    clock.advance(timedelta(minutes=100))
    await _attempt_and_record(ctx, ScriptedSender([(500, None)]))
    clock.advance(timedelta(minutes=1))
    await _attempt_and_record(ctx, ScriptedSender([(200, None)]))
    # A new event fails for 110 minutes: 211 since the first failure, but
    # only 110 since the success.
    await _published(ctx, "p1", None, 1, start=1)
    await _attempt_and_record(ctx, ScriptedSender([(500, None)]))
    clock.advance(timedelta(minutes=110))
    await _attempt_and_record(ctx, ScriptedSender([(500, None)]))
    assert (await CallbackConfigs(ctx).get(parse_config(config))).state == "ACTIVE"
    clock.advance(timedelta(minutes=11))
    await _attempt_and_record(ctx, ScriptedSender([(500, None)]))
    assert (await CallbackConfigs(ctx).get(parse_config(config))).state == "DISABLED"


async def test_a_failure_of_a_configuration_deleted_mid_attempt_is_recorded(
    ctx: AppContext,
) -> None:
    config = await _config(ctx, "p1")
    [delivery_id] = await _published(ctx, "p1", config, 1)
    deliverer = Deliverer(ctx, ScriptedSender([(500, None), (500, None)]), scale=0.0001, owner="t")
    outcomes = [await deliverer.attempt(c) for c in await _claim(ctx)]
    assert not any(o.attempt.succeeded for o in outcomes)
    # Deleted while the attempts were in flight: their configuration has no
    # health row to keep, and the batch of outcomes must still commit (it
    # once failed on the foreign key, again at every retry, so nothing the
    # dispatcher attempted afterwards was recorded).
    await CallbackConfigs(ctx).delete(parse_config(config))
    async with ctx.database.write() as conn:
        await attempts.insert_attempts(conn, [o.attempt for o in outcomes])
        disabled = await endpoint_health.after_attempts(
            conn, outcomes, ctx.clock(), ctx.policy.disable_after
        )
    assert disabled == []
    logged = await Notifications(ctx, ScriptedSender([])).attempts(
        DeliveryName("p1", delivery_id), "", 10, ""
    )
    assert [a.http_status for a in logged[0]] == [500]


async def test_retry_after_holds_the_whole_configuration(ctx: AppContext, clock: FakeClock) -> None:
    config = await _config(ctx, "p1")
    await _published(ctx, "p1", config, 1)
    await _attempt_and_record(ctx, ScriptedSender([(200, None), (429, "120")]))
    await Notifications(ctx, ScriptedSender([])).publish("p1", "GuestReviewSubmitted", "x", "{}")
    clock.advance(timedelta(seconds=119))
    assert await _claim(ctx) == []
    clock.advance(timedelta(seconds=2))
    assert len(await _claim(ctx)) == 2


async def test_per_second_slots_are_shared_by_claims(ctx: AppContext, clock: FakeClock) -> None:
    config = await _config(ctx, "p1", max_deliveries_per_second=4)
    other = await _config(ctx, "p2")
    await _attempt_and_record(ctx, ScriptedSender([]))  # the connectivity GETs
    await _published(ctx, "p1", config, 10)
    await _published(ctx, "p2", other, 2)  # queued behind the backlog
    clock.advance(timedelta(seconds=5))
    claims = [await _claim(ctx, limit=4, owner=owner) for owner in "abc"]
    config_id, other_id = config.rsplit("/", 1)[1], other.rsplit("/", 1)[1]
    limited = [c for claim in claims for c in claim if c.delivery.callback_config_id == config_id]
    # A 500 ms horizon at 4/s: slots at 0, 250 and 500 ms, whichever claim
    # took them; the rest of the backlog waits for its slots.
    times = [c.send_at for c in limited]
    assert times == [clock() + timedelta(milliseconds=250 * i) for i in range(3)]
    # The unlimited configuration is not held up behind the limited backlog.
    assert [c.delivery.callback_config_id for c in claims[2]] == [other_id, other_id]
    # Later claims reserve later slots: the row is shared.
    clock.advance(timedelta(seconds=1))
    later = await _claim(ctx, limit=10, owner="d")
    last = times[-1]
    assert last is not None
    assert later and all(c.send_at is not None and c.send_at >= last for c in later)


async def test_recover_requeues_failed_since_in_publish_order(
    ctx: AppContext, clock: FakeClock
) -> None:
    config = await _config(ctx, "p1")
    ids = await _published(ctx, "p1", config, 2)
    async with ctx.database.write() as conn:
        # As if their retries had run out (the e2e test runs them out for real).
        await conn.execute(
            notification_deliveries.update()
            .where(notification_deliveries.c.id.in_(ids))
            .values(state=DeliveryState.FAILED, next_attempt_time=None, update_time=clock())
        )
    notifications = Notifications(ctx, ScriptedSender([]))
    name = parse_config(config)
    assert await notifications.recover(name, clock() + timedelta(seconds=1)) == 0
    assert await notifications.recover(name, clock() - timedelta(seconds=1)) == 2
    claimed = [c.delivery.id for c in await _claim(ctx) if c.delivery.kind == "EVENT"]
    assert claimed == ids
