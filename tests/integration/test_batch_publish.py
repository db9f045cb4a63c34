"""BatchPublishEvents on both databases: all or nothing, idempotent per event
id, a bad entry named by its index; over a real gRPC channel."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.notifications.v1 import notification_pb2 as nt
from hookkeeper.notifications.v1 import notification_pb2_grpc as nt_grpc
from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.domain.ids import unix_millis
from hookkeeper.service.server import start_server
from hookkeeper.service.store import delivery_queue

TOKEN = "test-token-0123456789abcdef"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
PARENT = "partners/bulk"


@pytest.fixture
async def stubs(
    app_context: AppContext,
) -> AsyncIterator[tuple[nt_grpc.NotificationServiceAsyncStub, AppContext]]:
    ctx = AppContext(
        app_context.database,
        app_context.keyring,
        Policy(allow_insecure_callbacks=True),
        app_context.clock,
    )
    running = await start_server(ctx, "127.0.0.1:0", f"tests={TOKEN}")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        configs = cc_grpc.CallbackConfigServiceStub(channel)
        stub = nt_grpc.NotificationServiceStub(channel)
        created = await configs.CreateCallbackConfig(
            cc.CreateCallbackConfigRequest(
                parent=PARENT,
                callback_config=cc.CallbackConfig(
                    callback_url="http://127.0.0.1:9/hook",
                    api_key="bulk-key",
                    contact_email="ops@example.com",
                ),
            ),
            metadata=AUTH,
        )
        await stub.CreateSubscription(
            nt.CreateSubscriptionRequest(
                parent=PARENT,
                subscription=nt.Subscription(
                    event_type="GuestReviewSubmitted",
                    callback_config=created.callback_config.name,
                ),
            ),
            metadata=AUTH,
        )
        yield stub, ctx
    await running.stop(0)


def _entry(event_id: str, payload: str = '{"n": 1}', **extra: str) -> nt.PublishEventRequest:
    values = {"event_type": "GuestReviewSubmitted", "event_id": event_id, "payload_json": payload}
    values.update(extra)
    return nt.PublishEventRequest(**values)


def _fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    fields = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        fields += [v.field for v in bad.field_violations]
    return fields


async def _event_deliveries(ctx: AppContext) -> int:
    async with ctx.database.read() as conn:
        counts = await delivery_queue.count_by_state(conn)
    return counts.get("PENDING", 0)


async def test_a_batch_stores_every_event_and_queues_each_delivery(
    stubs: tuple[nt_grpc.NotificationServiceAsyncStub, AppContext],
) -> None:
    stub, ctx = stubs
    before = await _event_deliveries(ctx)  # the connectivity check
    reply = await stub.BatchPublishEvents(
        nt.BatchPublishEventsRequest(
            parent=PARENT, requests=[_entry(f"b-{i}", parent=PARENT) for i in range(250)]
        ),
        metadata=AUTH,
    )
    assert [r.event.event_id for r in reply.responses] == [f"b-{i}" for i in range(250)]
    assert not any(r.duplicate for r in reply.responses)
    assert all(len(r.deliveries) == 1 for r in reply.responses)
    assert len({r.deliveries[0].transaction_id for r in reply.responses}) == 250
    assert await _event_deliveries(ctx) == before + 250
    # Events and deliveries are keyed by version 7 ids of the publish's
    # millisecond (time-ordered, for the indexes: domain/ids.py); the
    # transactionIds partners see stay version 4.
    millis = unix_millis(ctx.clock())
    for r in reply.responses:
        for name in (r.event.name, r.deliveries[0].name):
            key = uuid.UUID(name.rsplit("/", 1)[1])
            assert (key.version, key.int >> 80) == (7, millis), name
        assert uuid.UUID(r.deliveries[0].transaction_id).version == 4
    # Each one is what PublishEvent would have stored: a republish is a duplicate.
    single = await stub.PublishEvent(
        nt.PublishEventRequest(
            parent=PARENT, event_type="GuestReviewSubmitted", event_id="b-7", payload_json="{}"
        ),
        metadata=AUTH,
    )
    assert single.duplicate
    assert single.event.name == reply.responses[7].event.name
    assert single.deliveries[0].name == reply.responses[7].deliveries[0].name


async def test_a_repeated_batch_is_idempotent_per_event_id(
    stubs: tuple[nt_grpc.NotificationServiceAsyncStub, AppContext],
) -> None:
    stub, ctx = stubs
    first = await stub.BatchPublishEvents(
        nt.BatchPublishEventsRequest(parent=PARENT, requests=[_entry("r-1"), _entry("r-2")]),
        metadata=AUTH,
    )
    queued = await _event_deliveries(ctx)
    again = await stub.BatchPublishEvents(
        nt.BatchPublishEventsRequest(
            parent=PARENT,
            requests=[_entry("r-2", '{"changed": true}'), _entry("r-3"), _entry("r-3")],
        ),
        metadata=AUTH,
    )
    assert [r.duplicate for r in again.responses] == [True, False, True]
    assert again.responses[0].event.name == first.responses[1].event.name
    assert again.responses[0].event.payload_json == first.responses[1].event.payload_json
    assert again.responses[0].deliveries[0].name == first.responses[1].deliveries[0].name
    assert again.responses[2].event.name == again.responses[1].event.name
    assert await _event_deliveries(ctx) == queued + 1  # only r-3 is new


async def test_an_earlier_id_in_a_batch_without_repeats_is_a_duplicate_in_place(
    stubs: tuple[nt_grpc.NotificationServiceAsyncStub, AppContext],
) -> None:
    # No id repeated within the batch: the answer follows the stored events'
    # order directly (the fast path of publish_many).
    stub, ctx = stubs
    first = await stub.BatchPublishEvents(
        nt.BatchPublishEventsRequest(parent=PARENT, requests=[_entry("e-1")]), metadata=AUTH
    )
    queued = await _event_deliveries(ctx)
    again = await stub.BatchPublishEvents(
        nt.BatchPublishEventsRequest(
            parent=PARENT, requests=[_entry("e-0"), _entry("e-1"), _entry("e-2")]
        ),
        metadata=AUTH,
    )
    assert [r.event.event_id for r in again.responses] == ["e-0", "e-1", "e-2"]
    assert [r.duplicate for r in again.responses] == [False, True, False]
    assert again.responses[1].event.name == first.responses[0].event.name
    assert again.responses[1].deliveries[0].name == first.responses[0].deliveries[0].name
    assert [len(r.deliveries) for r in again.responses] == [1, 1, 1]
    assert len({r.deliveries[0].name for r in again.responses}) == 3
    assert await _event_deliveries(ctx) == queued + 2


async def test_a_bad_entry_is_named_by_index_and_nothing_is_stored(
    stubs: tuple[nt_grpc.NotificationServiceAsyncStub, AppContext],
) -> None:
    stub, ctx = stubs
    queued = await _event_deliveries(ctx)
    requests = [_entry(f"x-{i}") for i in range(5)]
    requests[3] = _entry("x-3", "[1, 2]")
    requests[4] = _entry("x-4", parent="partners/other")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.BatchPublishEvents(
            nt.BatchPublishEventsRequest(parent=PARENT, requests=requests), metadata=AUTH
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _fields(caught.value) == ["requests[3].payload_json", "requests[4].parent"]
    assert await _event_deliveries(ctx) == queued
    # None of the good entries was stored either: publishing them now is new.
    reply = await stub.BatchPublishEvents(
        nt.BatchPublishEventsRequest(parent=PARENT, requests=[_entry("x-0")]), metadata=AUTH
    )
    assert not reply.responses[0].duplicate
    # Each kind of bad field is named, wherever it stops the all-good check.
    requests = [_entry(f"z-{i}") for i in range(4)]
    requests[1] = _entry("z-1", event_type="NoSuchType")
    requests[2] = _entry("", '{"n": 2}')
    requests[3] = _entry("z-3", "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.BatchPublishEvents(
            nt.BatchPublishEventsRequest(parent=PARENT, requests=requests), metadata=AUTH
        )
    assert _fields(caught.value) == [
        "requests[1].event_type",
        "requests[2].event_id",
        "requests[3].payload_json",
    ]
    assert await _event_deliveries(ctx) == queued + 1
    for requests, field in (
        ([], "requests"),
        ([_entry(f"y-{i}") for i in range(1001)], "requests"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.BatchPublishEvents(
                nt.BatchPublishEventsRequest(parent=PARENT, requests=requests), metadata=AUTH
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _fields(caught.value) == [field]


async def test_only_subscribed_types_are_queued_and_each_to_its_configuration(
    stubs: tuple[nt_grpc.NotificationServiceAsyncStub, AppContext],
) -> None:
    stub, ctx = stubs
    queued = await _event_deliveries(ctx)
    reply = await stub.BatchPublishEvents(
        nt.BatchPublishEventsRequest(
            parent=PARENT,
            requests=[
                _entry("m-0"),
                _entry("m-1", event_type="ReviewsApproved"),  # not subscribed
                _entry("m-2"),
            ],
        ),
        metadata=AUTH,
    )
    assert [len(r.deliveries) for r in reply.responses] == [1, 0, 1]
    assert not any(r.duplicate for r in reply.responses)
    assert reply.responses[1].event.event_type == "ReviewsApproved"
    targets = {d.callback_config for r in reply.responses for d in r.deliveries}
    assert len(targets) == 1
    assert targets.pop().startswith(f"{PARENT}/callbackConfigs/")
    assert await _event_deliveries(ctx) == queued + 2
    # The unsubscribed event is stored all the same: republished, a duplicate.
    again = await stub.BatchPublishEvents(
        nt.BatchPublishEventsRequest(
            parent=PARENT, requests=[_entry("m-1", event_type="ReviewsApproved")]
        ),
        metadata=AUTH,
    )
    assert again.responses[0].duplicate
    assert again.responses[0].event.name == reply.responses[1].event.name
    assert list(again.responses[0].deliveries) == []
