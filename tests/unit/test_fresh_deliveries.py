"""``new_deliveries`` (a batch publish's records, built from a template)
against ``new_delivery`` one at a time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from hookkeeper.service.domain.deliveries import DeliveryKind
from hookkeeper.service.store.delivery_queue import FreshDelivery, new_deliveries, new_delivery

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def test_each_record_equals_new_deliverys_and_stays_frozen() -> None:
    fresh = [
        FreshDelivery(f"d-{n}", f"t-{n}", f"pk-{n}", f"c-{n % 2}", f"ev-{n}", f"type-{n}")
        for n in range(3)
    ]
    records = new_deliveries(partner_id="p1", kind=DeliveryKind.EVENT, now=NOW, fresh=fresh)
    assert records == [
        new_delivery(
            partner_id="p1",
            kind=DeliveryKind.EVENT,
            event_pk=f.event_pk,
            config_id=f.config_id,
            now=NOW,
            ids=(f.id, f.transaction_id),
            event_id=f.event_id,
            event_type=f.event_type,
        )
        for f in fresh
    ]
    # Each record has its own attributes (none shares the template's dict).
    assert len({id(vars(r)) for r in records}) == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        records[0].state = "DELIVERED"  # type: ignore[misc]


def test_nothing_fresh_makes_no_records() -> None:
    assert new_deliveries(partner_id="p1", kind=DeliveryKind.EVENT, now=NOW, fresh=[]) == []
