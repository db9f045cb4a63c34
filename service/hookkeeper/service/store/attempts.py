"""Repository functions for the attempt log (append, and a keyset-paged
read for the delivery log). Each takes the connection of a transaction opened
by the caller."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from sqlalchemy import insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from hookkeeper.service.domain.deliveries import AttemptRecord, DeliveryState
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


# The outcomes of a dispatcher's batch on PostgreSQL, in one statement run in
# autocommit (it was BEGIN, an executemany insert, an executemany update, the
# failure-run read and COMMIT): the attempts logged, the deliveries settled
# (only while the lease is still theirs and the row PENDING: a dispatcher
# whose lease ran out, or a cancellation, is fenced off), and the run of
# failures of the configurations whose attempts all succeeded ended (rows
# locked in id order, as everywhere). Only for batches in which no delivery of
# an event failed: a failure goes through endpoint health's transactional
# path (holds, disabling, notices). Each outcome's row is found by its primary
# key (``mine``: OFFSET 0 keeps the LATERAL a lookup per outcome, not a join
# whose order rests on statistics: planned from none, the settle scanned every
# pending row once per outcome, 111 ms for 136 outcomes), then updated by that
# version's ctid, so a row changed since it was read (a cancellation) has
# another ctid and is left alone, as the fence requires.
_RECORD_PG = """
WITH o AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::int[],
        $7::int[], $8::bool[], $9::text[], $10::text[], $11::text[], $12::int[],
        $13::timestamptz[], $14::text[]
    ) AS o(attempt_id, delivery_id, partner_id, attempt_number, start_time, latency_ms,
           http_status, succeeded, error, token, state, round_failures, next_attempt_time,
           last_error)
), logged AS (
    INSERT INTO notification_attempts
        (id, delivery_id, partner_id, attempt_number, start_time, latency_ms, http_status,
         succeeded, error, dispatcher)
    SELECT attempt_id, delivery_id, partner_id, attempt_number, start_time, latency_ms,
           http_status, succeeded, error, $15
    FROM o
), mine AS MATERIALIZED (
    SELECT o.*, found.row_tid
    FROM o
    CROSS JOIN LATERAL (
        SELECT d.ctid AS row_tid, d.lease_token, d.state
        FROM notification_deliveries d
        WHERE d.id = o.delivery_id
        OFFSET 0
    ) found
    WHERE found.lease_token = o.token AND found.state = $17
), settled AS (
    UPDATE notification_deliveries d
    SET state = mine.state, round_failures = mine.round_failures,
        next_attempt_time = mine.next_attempt_time, lease_owner = NULL, lease_token = NULL,
        lease_expire_time = NULL, last_error = mine.last_error, update_time = $16
    FROM mine
    WHERE d.ctid = mine.row_tid
), recovered AS (
    UPDATE endpoint_health SET failing_since = NULL
    WHERE callback_config_id IN (
        SELECT callback_config_id FROM endpoint_health
        WHERE callback_config_id = ANY($18::text[]) AND failing_since IS NOT NULL
        ORDER BY callback_config_id
        FOR UPDATE
    )
)
SELECT 1
"""


@dataclass(frozen=True)
class Settled:
    """What an attempt makes of its delivery's row (see delivery_queue.settle_many)."""

    lease_token: str
    state: str
    round_failures: int
    next_attempt_time: datetime | None
    last_error: str | None


async def record_batch(
    pg: asyncpg.Connection,
    records: Sequence[AttemptRecord],
    settled: Sequence[Settled],
    recovered_configs: Sequence[str],
    now: datetime,
) -> None:
    """PostgreSQL, on the driver's connection (``Database.driver``, in
    autocommit): logs the attempts, settles their deliveries
    (``settled[i]`` is ``records[i]``'s) and ends the run of failures of
    ``recovered_configs``, in one statement. The dispatcher of the batch is
    the first record's."""
    if not records:
        return
    await pg.execute(
        _RECORD_PG,
        *(
            [r.id for r in records],
            [r.delivery_id for r in records],
            [r.partner_id for r in records],
            [r.attempt_number for r in records],
            [r.start_time for r in records],
            [r.latency_ms for r in records],
            [r.http_status for r in records],
            [r.succeeded for r in records],
            [r.error for r in records],
            [s.lease_token for s in settled],
            [s.state for s in settled],
            [s.round_failures for s in settled],
            [s.next_attempt_time for s in settled],
            [s.last_error for s in settled],
            records[0].dispatcher,
            now,
            str(DeliveryState.PENDING),
            sorted(recovered_configs),
        ),
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
