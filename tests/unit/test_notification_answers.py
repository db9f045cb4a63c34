"""The batch publish answer (built from per-batch templates) against the
one-message-per-record conversion it replaces."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hookkeeper.notifications.v1 import notification_pb2 as pb
from hookkeeper.service.api.notification_servicer import (
    batch_answer,
    delivery_message,
    event_message,
)
from hookkeeper.service.app.notifications import Published
from hookkeeper.service.domain.deliveries import (
    DeliveryKind,
    DeliveryRecord,
    DeliveryState,
    EventRecord,
)

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=90, microseconds=123_000)


def _event(n: int) -> EventRecord:
    return EventRecord(f"pk-{n}", "p1", "BookingCreated", f"ev-{n}", '{"n":1}', False, NOW)


def _delivery(n: int, **changes: Any) -> DeliveryRecord:
    record = DeliveryRecord(
        id=f"d-{n}",
        partner_id="p1",
        kind=DeliveryKind.EVENT,
        event_pk=f"pk-{n}",
        callback_config_id="c1",
        transaction_id=f"t-{n}",
        state=DeliveryState.PENDING,
        attempt_count=0,
        round_failures=0,
        next_attempt_time=NOW,
        last_error=None,
        create_time=NOW,
        update_time=NOW,
        event_id=f"ev-{n}",
        event_type="BookingCreated",
    )
    return dataclasses.replace(record, **changes)


def _expected(published: list[Published]) -> pb.BatchPublishEventsResponse:
    return pb.BatchPublishEventsResponse(
        responses=[
            pb.PublishEventResponse(
                event=event_message(p.event),
                deliveries=[delivery_message(d) for d in p.deliveries],
                duplicate=p.duplicate,
            )
            for p in published
        ]
    )


def test_a_batch_of_fresh_deliveries_answers_as_one_message_per_record() -> None:
    published = [Published(_event(n), [_delivery(n)], n % 3 == 0) for n in range(5)]
    published.append(Published(_event(9), [], True))
    assert batch_answer(published) == _expected(published)


# A value other than _delivery's for every field of a delivery record: a
# field the template key missed would answer with the first record's value.
_OTHER: dict[str, Any] = {
    "id": "d-other",
    "partner_id": "p2",
    "kind": DeliveryKind.TEST,
    "event_pk": "pk-other",
    "callback_config_id": "c2",
    "transaction_id": "t-other",
    "state": DeliveryState.FAILED,
    "attempt_count": 3,
    "round_failures": 2,
    "next_attempt_time": LATER,
    "last_error": "HTTP 500",
    "create_time": LATER,
    "update_time": LATER,
    "event_id": "ev-other",
    "event_type": "BookingCancelled",
}


def test_other_covers_every_field_of_a_delivery_record() -> None:
    assert set(_OTHER) == {f.name for f in dataclasses.fields(DeliveryRecord)}


@pytest.mark.parametrize("field", sorted(_OTHER))
def test_a_delivery_differing_in_one_field_answers_with_its_own_value(field: str) -> None:
    published = [
        Published(_event(1), [_delivery(1)], False),
        Published(_event(2), [_delivery(2, **{field: _OTHER[field]})], True),
        Published(_event(3), [_delivery(3), _delivery(4, state=DeliveryState.DELIVERED)], True),
    ]
    assert batch_answer(published) == _expected(published)
