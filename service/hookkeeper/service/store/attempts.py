"""Repository functions for the attempt log (append, and a keyset-paged
read for the delivery log). Each takes the connection of a transaction opened
by the caller."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from hookkeeper.service.domain.deliveries import AttemptRecord
from hookkeeper.service.store.delivery_tables import (
    notification_attempts,
    notification_deliveries,
    notification_events,
    notification_subscriptions,
)
from hookkeeper.service.store.tables import callback_configs

_events = notification_events.c
_subs = notification_subscriptions.c
_deliveries = notification_deliveries.c
_attempts = notification_attempts.c
_configs = callback_configs.c


_INSERT_ATTEMPT = insert(notification_attempts)


async def insert_attempts(conn: AsyncConnection, records: Sequence[AttemptRecord]) -> None:
    """Appends attempts to the log."""
    if not records:
        return
    await conn.execute(
        _INSERT_ATTEMPT,
        [
            {
                "id": r.id,
                "delivery_id": r.delivery_id,
                "partner_id": r.partner_id,
                "attempt_number": r.attempt_number,
                "start_time": r.start_time,
                "latency_ms": r.latency_ms,
                "http_status": r.http_status,
                "succeeded": r.succeeded,
                "error": r.error,
                "dispatcher": r.dispatcher,
            }
            for r in records
        ],
    )


async def list_attempts(
    conn: AsyncConnection,
    partner_id: str,
    *,
    delivery_id: str | None,
    event_id: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[AttemptRecord]:
    """Up to ``limit`` attempts, newest first, before a keyset cursor."""
    stmt = (
        select(
            notification_attempts,
            _deliveries.kind,
            _deliveries.callback_config_id,
            _deliveries.transaction_id,
            _events.event_id,
            _events.event_type,
        )
        .select_from(
            notification_attempts.join(
                notification_deliveries, _deliveries.id == _attempts.delivery_id
            ).outerjoin(notification_events, _events.id == _deliveries.event_pk)
        )
        .where(_attempts.partner_id == partner_id)
    )
    if delivery_id is not None:
        stmt = stmt.where(_attempts.delivery_id == delivery_id)
    if event_id is not None:
        stmt = stmt.where(_events.event_id == event_id)
    if before is not None:
        stmt = stmt.where(tuple_(_attempts.start_time, _attempts.id) < tuple_(*before))
    stmt = stmt.order_by(_attempts.start_time.desc(), _attempts.id.desc()).limit(limit)
    out = []
    for row in await conn.execute(stmt):
        m = row._mapping
        out.append(
            AttemptRecord(
                id=m["id"],
                delivery_id=m["delivery_id"],
                partner_id=m["partner_id"],
                attempt_number=m["attempt_number"],
                start_time=m["start_time"],
                latency_ms=m["latency_ms"],
                http_status=m["http_status"],
                succeeded=bool(m["succeeded"]),
                error=m["error"],
                dispatcher=m["dispatcher"],
                kind=m["kind"],
                callback_config_id=m["callback_config_id"],
                transaction_id=m["transaction_id"],
                event_id=m["event_id"] or "",
                event_type=m["event_type"] or "",
            )
        )
    return out
