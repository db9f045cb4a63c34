"""Repository functions for published notification events. Each takes the
connection of a transaction opened by the caller."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookkeeper.service.domain.deliveries import EventRecord
from hookkeeper.service.store.delivery_tables import (
    notification_attempts,
    notification_deliveries,
    notification_events,
    notification_subscriptions,
)
from hookkeeper.service.store.dialects import insert_ignoring
from hookkeeper.service.store.tables import callback_configs

_events = notification_events.c
_subs = notification_subscriptions.c
_deliveries = notification_deliveries.c
_attempts = notification_attempts.c
_configs = callback_configs.c


# Statements are built once, with bound parameters (as in callback_configs.py):
# building SQLAlchemy constructs per call is a large share of the CPU time of
# the dispatcher's and publisher's hot paths.
_INSERT_EVENT = insert_ignoring(notification_events, ["partner_id", "event_id"])
_GET_EVENT = select(notification_events).where(
    _events.partner_id == bindparam("partner_id"), _events.event_id == bindparam("event_id")
)


def _event(m: Any) -> EventRecord:
    return EventRecord(
        id=m["id"],
        partner_id=m["partner_id"],
        event_type=m["event_type"],
        event_id=m["event_id"],
        payload=m["payload"],
        is_test=bool(m["is_test"]),
        create_time=m["create_time"],
    )


async def insert_event(conn: AsyncConnection, record: EventRecord) -> tuple[EventRecord, bool]:
    """Stores the event unless the partner already published its event id;
    returns the stored event and whether this call inserted it."""
    result = await conn.execute(
        _INSERT_EVENT[conn.dialect.name],
        {
            "id": record.id,
            "partner_id": record.partner_id,
            "event_type": record.event_type,
            "event_id": record.event_id,
            "payload": record.payload,
            "is_test": record.is_test,
            "create_time": record.create_time,
        },
    )
    if result.rowcount == 1:
        return record, True
    row = (
        await conn.execute(
            _GET_EVENT, {"partner_id": record.partner_id, "event_id": record.event_id}
        )
    ).one()
    return _event(row._mapping), False


async def get_event(conn: AsyncConnection, partner_id: str, event_id: str) -> EventRecord | None:
    """The partner's event published under ``event_id``, if any."""
    row = (await conn.execute(_GET_EVENT, {"partner_id": partner_id, "event_id": event_id})).first()
    return _event(row._mapping) if row else None


_GET_EVENTS = select(notification_events).where(
    _events.partner_id == bindparam("partner_id"),
    _events.event_id.in_(bindparam("event_ids", expanding=True)),
)


async def get_events(
    conn: AsyncConnection, partner_id: str, event_ids: Sequence[str]
) -> dict[str, EventRecord]:
    """The partner's events published under any of ``event_ids``, by event id."""
    if not event_ids:
        return {}
    found = await conn.execute(_GET_EVENTS, {"partner_id": partner_id, "event_ids": event_ids})
    return {e.event_id: e for e in (_event(row._mapping) for row in found)}


async def _insert_new(conn: AsyncConnection, records: list[EventRecord]) -> set[str]:
    """Inserts the events whose ids are new; returns those ids. One
    statement per event: batches reach here on SQLite only (embedded, single
    writer), PostgreSQL's go through ``delivery_queue.publish_many``."""
    return {r.event_id for r in records if (await insert_event(conn, r))[1]}


async def insert_events(
    conn: AsyncConnection, records: list[EventRecord]
) -> list[tuple[EventRecord, bool]]:
    """Stores many new (not test) events of one partner, all created at the
    same time, each unless its id was published before; in ``records``'
    order, the stored event and whether this call inserted it. Ids must be
    distinct."""
    if not records:
        return []
    inserted = await _insert_new(conn, records)
    missing = [r.event_id for r in records if r.event_id not in inserted]
    earlier = await get_events(conn, records[0].partner_id, missing)
    return [(r, True) if r.event_id in inserted else (earlier[r.event_id], False) for r in records]
