"""The delivery use cases and queue on SQLite and PostgreSQL, in-process:
idempotent publish, disjoint claims, lease fencing, cancellation on delete,
and retries scheduled per policy (a fake sender stands in only for the HTTP
hop, which the end-to-end tests cover for real)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from hookkeeper.service.app.callback_configs import CallbackConfigs
from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.app.delivering import Deliverer
from hookkeeper.service.app.notifications import Notifications
from hookkeeper.service.app.sending import Answer
from hookkeeper.service.crypto.keyring import Keyring, generate_key_entry
from hookkeeper.service.delivery.http import Sender
from hookkeeper.service.domain.callback_config import ConfigFields
from hookkeeper.service.domain.deliveries import DeliveryKind, DeliveryState
from hookkeeper.service.domain.errors import AlreadyExists, InvalidArgument, NotFound
from hookkeeper.service.store import attempts, delivery_queue, gauges
from hookkeeper.service.store.records import (
    ClaimedDelivery,
)
from tests.support.clock import FakeClock


class ScriptedSender(Sender):
    """Answers from a script instead of the network."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__(allow_insecure=True)
        self.statuses = statuses
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    async def request(
        self, method: str, url: str, *, headers: object, body: bytes | None, timeout_seconds: float
    ) -> Answer:
        self.calls.append((method, url, dict(headers)))  # type: ignore[call-overload]
        status = self.statuses.pop(0) if self.statuses else 200
        return Answer(status, 3, "" if status < 300 else f"the callback answered HTTP {status}")


@pytest.fixture
def ctx(app_context: AppContext) -> AppContext:
    """Development policy: local URLs allowed."""
    return AppContext(
        app_context.database,
        app_context.keyring,
        Policy(allow_insecure_callbacks=True),
        app_context.clock,
    )


async def _config(ctx: AppContext, partner: str) -> str:
    created = await CallbackConfigs(ctx).create(
        partner,
        ConfigFields("http://127.0.0.1:9/hook", "key", "ops@example.com", 5),
    )
    return str(created.config.name)


async def _claim(ctx: AppContext, limit: int = 10) -> list[ClaimedDelivery]:
    async with ctx.database.write() as conn:
        return await delivery_queue.claim_due(
            conn,
            now=ctx.clock(),
            limit=limit,
            owner="t",
            token=str(uuid.uuid4()),
            lease_margin=timedelta(seconds=1),
        )


async def test_publish_is_idempotent_and_fans_out_to_the_subscription(ctx: AppContext) -> None:
    notifications = Notifications(ctx, ScriptedSender([]))
    config = await _config(ctx, "p1")
    await notifications.subscribe("p1", "GuestReviewSubmitted", config)
    with pytest.raises(AlreadyExists):
        await notifications.subscribe("p1", "GuestReviewSubmitted", config)
    first = await notifications.publish("p1", "GuestReviewSubmitted", "e1", '{"a":1}')
    second = await notifications.publish("p1", "GuestReviewSubmitted", "e1", '{"a":2}')
    assert len(first.deliveries) == 1
    assert second.duplicate
    assert [d.id for d in second.deliveries] == [first.deliveries[0].id]
    with pytest.raises(InvalidArgument) as caught:
        await notifications.publish("p1", "Nope", "", "[]")
    assert {v.field for v in caught.value.violations} == {"event_type", "event_id", "payload_json"}


async def test_claims_are_disjoint_and_leases_fence_late_writers(
    ctx: AppContext, clock: FakeClock
) -> None:
    notifications = Notifications(ctx, ScriptedSender([]))
    config = await _config(ctx, "p2")
    await notifications.subscribe("p2", "GuestReviewSubmitted", config)
    for i in range(6):
        await notifications.publish("p2", "GuestReviewSubmitted", f"e{i}", "{}")
    # The connectivity check of the new URL is in the queue too: 7 rows.
    batches = await asyncio.gather(*[_claim(ctx, 3) for _ in range(4)])
    ids = [c.delivery.id for batch in batches for c in batch]
    assert len(ids) == 7
    assert len(set(ids)) == 7
    assert await _claim(ctx) == []  # all leased
    clock.advance(timedelta(seconds=7))  # the 5 s timeout + 1 s margin ran out
    async with ctx.database.read() as conn:
        assert await gauges.delivery_queue(conn, clock()) == (7, 7.0)
    again = await _claim(ctx)
    assert len(again) == 7
    stale = batches[0][0]
    async with ctx.database.write() as conn:
        await delivery_queue.settle_many(
            conn,
            [
                {
                    "b_id": stale.delivery.id,
                    "b_token": stale.lease_token,  # the expired lease's token
                    "b_state": DeliveryState.DELIVERED,
                    "b_round_failures": 0,
                    "b_next": None,
                    "b_error": None,
                    "b_now": clock(),
                }
            ],
        )
        rows = await delivery_queue.count_by_state(conn)
    assert rows == {DeliveryState.PENDING: 7}


async def test_failures_retry_per_policy_then_fail(ctx: AppContext, clock: FakeClock) -> None:
    sender = ScriptedSender([500] * 100)
    notifications = Notifications(ctx, sender)
    config = await _config(ctx, "p3")
    await notifications.subscribe("p3", "MessageReceived", config)
    await notifications.publish("p3", "MessageReceived", "m", "{}")
    deliverer = Deliverer(ctx, sender, scale=1.0, owner="t")
    outcomes = 0
    for _ in range(40):
        claimed = await _claim(ctx)
        for item in claimed:
            outcome = await deliverer.attempt(item)
            outcomes += 1
            async with ctx.database.write() as conn:
                await attempts.insert_attempts(conn, [outcome.attempt])
                await delivery_queue.settle_many(
                    conn,
                    [
                        {
                            "b_id": item.delivery.id,
                            "b_token": item.lease_token,
                            "b_state": outcome.settlement.state,
                            "b_round_failures": outcome.settlement.round_failures,
                            "b_next": outcome.settlement.next_attempt_time,
                            "b_error": outcome.settlement.last_error,
                            "b_now": clock(),
                        }
                    ],
                )
        clock.advance(timedelta(hours=1))
    # One connectivity GET, then the first attempt and 24 hourly retries.
    assert outcomes == 1 + 25
    async with ctx.database.read() as conn:
        assert await delivery_queue.count_by_state(conn) == {DeliveryState.FAILED: 2}
    methods = [method for method, _, _ in sender.calls]
    assert (methods.count("GET"), methods.count("POST")) == (1, 25)


async def test_deleting_a_configuration_cancels_its_pending_deliveries(ctx: AppContext) -> None:
    notifications = Notifications(ctx, ScriptedSender([]))
    config = await _config(ctx, "p4")
    await notifications.subscribe("p4", "PropertyStatusChanged", config)
    await notifications.publish("p4", "PropertyStatusChanged", "x", "{}")
    from hookkeeper.service.domain.names import parse_config

    await CallbackConfigs(ctx).delete(parse_config(config))
    async with ctx.database.read() as conn:
        assert await delivery_queue.count_by_state(conn) == {DeliveryState.CANCELLED: 2}
    assert await notifications.subscriptions("p4") == []
    with pytest.raises(NotFound):
        await notifications.send_test(parse_config(config), "PropertyStatusChanged", "{}")


async def test_changing_the_callback_url_queues_one_connectivity_check(ctx: AppContext) -> None:
    from hookkeeper.service.domain.names import parse_config

    name = parse_config(await _config(ctx, "p5"))
    configs = CallbackConfigs(ctx)
    same = ConfigFields(callback_url="http://127.0.0.1:9/hook")
    await configs.update(name, same, ["callback_url"])  # unchanged: nothing queued
    other = ConfigFields(callback_url="http://127.0.0.1:9/other")
    await configs.update(name, other, ["callback_url"])
    await configs.update(name, ConfigFields(contact_email="x@example.com"), ["contact_email"])
    claimed = await _claim(ctx)
    checks = [c for c in claimed if c.delivery.kind == DeliveryKind.CONNECTIVITY_CHECK]
    assert len(checks) == len(claimed) == 2  # the one of create and the one of the change


async def test_credentials_sealed_under_a_lost_key_fail_the_attempt_visibly(
    ctx: AppContext,
) -> None:
    sender = ScriptedSender([])
    notifications = Notifications(ctx, sender)
    config = await _config(ctx, "p9")
    await notifications.subscribe("p9", "MessageReceived", config)
    await notifications.publish("p9", "MessageReceived", "m", "{}")
    # The operator dropped the key the rows were sealed under.
    other_keyring = Keyring.parse(generate_key_entry())
    lost = AppContext(ctx.database, other_keyring, ctx.policy, ctx.clock)
    deliverer = Deliverer(lost, sender, scale=1.0, owner="t")
    outcomes = [await deliverer.attempt(item) for item in await _claim(ctx)]
    assert len(outcomes) == 2  # the connectivity GET and the event
    for outcome in outcomes:
        assert not outcome.attempt.succeeded
        assert outcome.attempt.error.startswith("cannot open stored credentials: key ")
    states = {o.claimed.delivery.kind: o.settlement.state for o in outcomes}
    # The event is retried per its policy; a connectivity check never is.
    assert states == {
        DeliveryKind.EVENT: DeliveryState.PENDING,
        DeliveryKind.CONNECTIVITY_CHECK: DeliveryState.FAILED,
    }
    assert sender.calls == []  # nothing was sent without its credentials
