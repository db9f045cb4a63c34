"""End to end on SQLite: a real ``hookkeeper serve`` (with its dispatcher) and
a real aiohttp receiver that verifies headers and signatures itself."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import notification_pb2 as nt
from tests.e2e.delivery_harness import METADATA, Client, Stack, eventually, new_stack, partner
from tests.support.receiver import Received, Receiver

pytestmark = pytest.mark.e2e
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Stack, Client]]:
    """One server with its dispatcher, development mode (127.0.0.1 allowed)."""
    stack = new_stack(
        tmp_path_factory.mktemp("delivery"), HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true"
    )
    client = stack.serve("serve")
    yield stack, client
    await client.close()
    assert stack.stop_all() == [0], stack.processes[0].output()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A fresh receiver per test."""
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


async def test_signed_delivery_with_documented_headers_once_per_event_id(
    stack: tuple[Stack, Client], receiver: Receiver
) -> None:
    _, client = stack
    who = partner()
    config, secret = await client.config(who, receiver.url)
    receiver.secrets = [secret]
    await client.subscribe(who, "GuestReviewSubmitted", config)
    # The connectivity GET of the new URL arrives first, carrying no body.
    await receiver.wait_until(lambda: any(r.method == "GET" for r in receiver.requests))

    first = await client.publish(who, "GuestReviewSubmitted", "evt-1", '{"reviewId": 7}')
    again = await client.publish(who, "GuestReviewSubmitted", "evt-1", '{"reviewId": 8}')
    assert len(first.deliveries) == 1
    assert not first.duplicate
    assert again.duplicate
    assert again.event.payload_json == '{"reviewId":7}'

    await receiver.wait_until(lambda: len(receiver.posts()) >= 1)
    await asyncio.sleep(0.5)  # a second delivery, if one were queued, would arrive now
    [post] = receiver.posts()
    assert UUID.fullmatch(post.transaction_id)
    assert post.transaction_id == first.deliveries[0].transaction_id
    assert post.headers["api-key"] == "partner-api-key-é"
    assert post.headers["content-type"] == "application/json"
    sent_ms = int(post.headers["x-eg-notification-timestamp"])
    assert abs(sent_ms - time.time() * 1000) < 60_000
    assert post.signature_matches == [0]
    envelope = post.envelope()
    assert envelope["eventId"] == "evt-1"
    assert envelope["eventType"] == "GuestReviewSubmitted"
    assert envelope["payload"] == {"reviewId": 7}
    assert envelope["test"] is False

    attempts = await client.attempts(f"{who}/deliveries/-")
    kinds = sorted(nt.DeliveryKind.Name(a.kind) for a in attempts)
    assert kinds == ["DELIVERY_KIND_CONNECTIVITY_CHECK", "DELIVERY_KIND_EVENT"]
    event_attempt = next(a for a in attempts if a.kind == nt.DELIVERY_KIND_EVENT)
    assert event_attempt.succeeded
    assert event_attempt.http_status == 200
    assert event_attempt.event_id == "evt-1"
    assert event_attempt.transaction_id == post.transaction_id


async def test_two_signatures_newest_first_during_an_overlap(
    stack: tuple[Stack, Client], receiver: Receiver
) -> None:
    _, client = stack
    who = partner()
    config, old = await client.config(who, receiver.url)
    await client.subscribe(who, "MessageReceived", config)
    new = await client.refresh(config, keep=True)
    receiver.secrets = [new, old]
    await client.publish(who, "MessageReceived", "m-1")
    await receiver.wait_until(lambda: len(receiver.posts()) == 1)
    assert receiver.posts()[0].signature_matches == [0, 1]  # new first, then old


async def test_retries_on_500_and_on_timeout(
    stack: tuple[Stack, Client], receiver: Receiver
) -> None:
    _, client = stack
    who = partner()
    config, secret = await client.config(who, receiver.url, wait_seconds=1)
    receiver.secrets = [secret]
    await client.subscribe(who, "GuestReviewSubmitted", config)
    seen: dict[str, int] = {}

    async def flaky(request: Received) -> int:
        if request.method != "POST":
            return 200
        event_id = request.envelope()["eventId"]
        seen[event_id] = seen.get(event_id, 0) + 1
        if event_id == "fails-twice" and seen[event_id] <= 2:
            return 500
        if event_id == "slow-once" and seen[event_id] == 1:
            await asyncio.sleep(3)  # beyond the 1 s request timeout
        return 204

    receiver.behaviour = flaky
    await client.publish(who, "GuestReviewSubmitted", "fails-twice")
    await client.publish(who, "GuestReviewSubmitted", "slow-once")

    async def settled() -> None:
        attempts = await client.attempts(f"{who}/deliveries/-")
        by_event: dict[str, list[nt.DeliveryAttempt]] = {}
        for a in attempts:
            by_event.setdefault(a.event_id, []).append(a)
        assert [a.http_status for a in by_event.get("fails-twice", [])] == [500, 500, 204]
        slow = by_event.get("slow-once", [])
        assert [a.http_status for a in slow] == [0, 204]
        assert "no answer within 1s" in slow[0].error
        assert [a.attempt_number for a in slow] == [1, 2]
        assert len({a.transaction_id for a in slow}) == 1

    await eventually(settled, within=30)


async def test_test_send_reports_the_outcome_and_redelivery(
    stack: tuple[Stack, Client], receiver: Receiver
) -> None:
    _, client = stack
    who = partner()
    config, secret = await client.config(who, receiver.url)
    receiver.secrets = [secret]

    async def teapot(request: Received) -> int:
        return 418 if request.method == "POST" else 200

    receiver.behaviour = teapot
    reply = await client.notifications.SendTestNotification(
        nt.SendTestNotificationRequest(
            name=config, event_type="PropertyStatusChanged", payload_json='{"a":1}'
        ),
        metadata=METADATA,
    )
    assert not reply.delivered
    assert reply.http_status == 418
    assert "418" in reply.error
    assert receiver.posts()[-1].envelope()["test"] is True
    assert receiver.posts()[-1].signature_matches == [0]

    bad = nt.SendTestNotificationRequest(name=config, event_type="Nope", payload_json="[]")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.notifications.SendTestNotification(bad, metadata=METADATA)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "event_type" in (caught.value.details() or "")
    assert "payload_json" in (caught.value.details() or "")

    # A notification that exhausted its policy can be redelivered.
    receiver.behaviour = teapot
    await client.subscribe(who, "MessageThreadCreated", config)
    published = await client.publish(who, "MessageThreadCreated", "t-1")
    delivery = published.deliveries[0].name
    await receiver.wait_until(lambda: len(receiver.posts()) == 2)
    # MessageThreadCreated retries hourly (72 s at this scale): still pending.
    with pytest.raises(grpc.aio.AioRpcError) as pending:
        await client.notifications.RedeliverNotification(
            nt.RedeliverNotificationRequest(name=delivery), metadata=METADATA
        )
    assert pending.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # Deleting the configuration cancels the pending delivery.
    await client.configs.DeleteCallbackConfig(
        cc.DeleteCallbackConfigRequest(name=config), metadata=METADATA
    )
    with pytest.raises(grpc.aio.AioRpcError) as cancelled:
        await client.notifications.RedeliverNotification(
            nt.RedeliverNotificationRequest(name=delivery), metadata=METADATA
        )
    assert cancelled.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cancelled" in (cancelled.value.details() or "")
    subs = await client.notifications.ListSubscriptions(
        nt.ListSubscriptionsRequest(parent=who), metadata=METADATA
    )
    assert list(subs.subscriptions) == []


async def test_redeliver_a_delivered_notification(
    stack: tuple[Stack, Client], receiver: Receiver
) -> None:
    _, client = stack
    who = partner()
    config, secret = await client.config(who, receiver.url)
    receiver.secrets = [secret]
    await client.subscribe(who, "ReviewsApproved", config)
    published = await client.publish(who, "ReviewsApproved", "r-1")
    await receiver.wait_until(lambda: len(receiver.posts()) == 1)
    name = published.deliveries[0].name

    async def delivered() -> None:
        attempts = await client.attempts(name)
        assert [a.succeeded for a in attempts] == [True]

    await eventually(delivered)
    reply = await client.notifications.RedeliverNotification(
        nt.RedeliverNotificationRequest(name=name), metadata=METADATA
    )
    assert reply.delivery.state == nt.Delivery.STATE_PENDING
    await receiver.wait_until(lambda: len(receiver.posts()) == 2)
    first, second = receiver.posts()
    assert first.transaction_id == second.transaction_id
    other = f"partners/p-other/deliveries/{name.rsplit('/', 1)[1]}"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.attempts(other)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_subscriptions_crud(stack: tuple[Stack, Client], tmp_path: Path) -> None:
    _, client = stack
    who = partner()
    a, _ = await client.config(who, "http://127.0.0.1:9/a")
    b, _ = await client.config(who, "http://127.0.0.1:9/b")
    sub = await client.subscribe(who, "PropertyStatusChanged", a)
    assert sub.name == f"{who}/subscriptions/PropertyStatusChanged"
    with pytest.raises(grpc.aio.AioRpcError) as twice:
        await client.subscribe(who, "PropertyStatusChanged", b)
    assert twice.value.code() == grpc.StatusCode.ALREADY_EXISTS
    moved = await client.notifications.UpdateSubscription(
        nt.UpdateSubscriptionRequest(
            subscription=nt.Subscription(name=sub.name, callback_config=b)
        ),
        metadata=METADATA,
    )
    assert moved.subscription.callback_config == b
    stranger, _ = await client.config(partner(), "http://127.0.0.1:9/c")
    with pytest.raises(grpc.aio.AioRpcError) as foreign:
        await client.subscribe(who, "MessageReceived", stranger)
    assert foreign.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await client.notifications.DeleteSubscription(
        nt.DeleteSubscriptionRequest(name=sub.name), metadata=METADATA
    )
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await client.notifications.DeleteSubscription(
            nt.DeleteSubscriptionRequest(name=sub.name), metadata=METADATA
        )
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    types = await client.notifications.ListEventTypes(nt.ListEventTypesRequest(), metadata=METADATA)
    assert "GuestReviewSubmitted" in [t.event_type for t in types.event_types]
    # Publishing with no subscription stores the event and queues nothing.
    reply = await client.publish(who, "GuestReviewSubmitted", str(uuid.uuid4()))
    assert list(reply.deliveries) == []


async def test_connectivity_get_is_recorded_and_never_blocks_the_mutation(
    stack: tuple[Stack, Client], receiver: Receiver
) -> None:
    _, client = stack
    who = partner()
    arrived, release = asyncio.Event(), asyncio.Event()

    async def hold_the_get(request: Received) -> int:
        if request.method == "GET":
            arrived.set()
            await release.wait()  # answered only once the mutation has returned
        return 200

    receiver.behaviour = hold_the_get
    # Had the mutation waited for its GET, the GET would have timed out
    # (after 2 s) unanswered and been recorded as a failure below.
    config, _ = await client.config(who, receiver.url, wait_seconds=2)
    await asyncio.wait_for(arrived.wait(), 20)
    release.set()
    moved = cc.CallbackConfig(name=config, callback_url=receiver.url + "?moved=1")
    arrived.clear()
    release.clear()
    await client.configs.UpdateCallbackConfig(
        cc.UpdateCallbackConfigRequest(
            callback_config=moved, update_mask=FieldMask(paths=["callback_url"])
        ),
        metadata=METADATA,
    )
    await asyncio.wait_for(arrived.wait(), 20)
    release.set()

    async def recorded() -> None:
        attempts = await client.attempts(f"{who}/deliveries/-")
        checks = [a for a in attempts if a.kind == nt.DELIVERY_KIND_CONNECTIVITY_CHECK]
        assert len(checks) == 2
        assert all(a.succeeded and a.http_status == 200 for a in checks), checks

    await eventually(recorded)
    gets = [r for r in receiver.requests if r.method == "GET"]
    assert [r.body for r in gets] == [b"", b""]
    assert gets[0].headers["api-key"] == "partner-api-key-é"
