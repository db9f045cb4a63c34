"""Repository functions for the delivery queue: queueing, claiming under a
lease, settling, cancelling and requeueing deliveries. Each takes the
connection of a transaction opened by the caller.

The queue's claim is ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
concurrent dispatchers never pick the same row; on SQLite the clause is left
out and the claiming transaction's ``BEGIN IMMEDIATE`` writer lock does the
same job. A claimed row stays PENDING, keeps its ``next_attempt_time`` and
gets a lease (``lease_expire_time``, which no index covers): the claim skips a
row whose lease has not ended, and if the dispatcher dies the row is simply
claimable again once its lease runs out.

The lease writes only columns no index covers, and the table keeps free room
on its pages (fillfactor, migration 0006), so on PostgreSQL the claim is a
HOT update: the new row version goes on the same page and no index gets a
new entry. Moving ``next_attempt_time`` (indexed) made every index of the
table take one more entry per claimed row, a cost that grew with the table
(docs/delivery.md, "The claim on a million").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import asyncpg
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookkeeper.service.crypto.keyring import Sealed
from hookkeeper.service.domain.deliveries import (
    DeliveryKind,
    DeliveryRecord,
    DeliveryState,
    EventRecord,
)
from hookkeeper.service.domain.endpoint_health import DISABLED
from hookkeeper.service.domain.ids import unix_millis, uuid4_string, uuid7_prefix, uuid7_string
from hookkeeper.service.store import batch
from hookkeeper.service.store.batch import Writer
from hookkeeper.service.store.callback_configs import live_secrets_of
from hookkeeper.service.store.delivery_tables import (
    notification_attempts,
    notification_deliveries,
    notification_events,
    notification_subscriptions,
)
from hookkeeper.service.store.endpoint_health import Admission, DueRow, admit
from hookkeeper.service.store.endpoint_tables import endpoint_health
from hookkeeper.service.store.records import ClaimedDelivery, SecretRecord, TargetRecord
from hookkeeper.service.store.tables import UTCDateTime, callback_configs

_events = notification_events.c
_subs = notification_subscriptions.c
_deliveries = notification_deliveries.c
_attempts = notification_attempts.c
_configs = callback_configs.c
_health = endpoint_health.c

# The dispatchers LISTEN here: a publish that queued deliveries tells them on
# commit, so a delivery waits for no poll (the payload is empty; PostgreSQL
# folds the notifications of one transaction into one).
DUE_CHANNEL = "hookkeeper_deliveries_due"


# Statements are built once, with bound parameters (as in callback_configs.py):
# building SQLAlchemy constructs per call is a large share of the CPU time of
# the dispatcher's and publisher's hot paths.
_INSERT_DELIVERY = insert(notification_deliveries)
# The claim also reads each configuration's gates (state, Retry-After hold,
# per-second cap) for endpoint_health.admit; see docs/endpoint-health.md.
_DUE = (
    select(
        _deliveries.id,
        _deliveries.partner_id,
        _deliveries.callback_config_id,
        _configs.request_timeout_seconds,
        _configs.state.label("c_state"),
        _configs.disable_reason.label("c_reason"),
        _configs.max_deliveries_per_second.label("c_rate"),
        _health.hold_until.label("h_hold_until"),
    )
    .select_from(
        notification_deliveries.outerjoin(
            callback_configs, _configs.id == _deliveries.callback_config_id
        ).outerjoin(endpoint_health, _health.callback_config_id == _deliveries.callback_config_id)
    )
    .where(
        _deliveries.state == DeliveryState.PENDING,
        _deliveries.next_attempt_time <= bindparam("now"),
        # Not held: a lease still running (another attempt in flight).
        _deliveries.lease_expire_time.is_(None)
        | (_deliveries.lease_expire_time <= bindparam("now")),
        # Configurations whose callback host is at the dispatcher's cap.
        _deliveries.callback_config_id.not_in(bindparam("skip", expanding=True)),
    )
    .order_by(_deliveries.next_attempt_time)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True, of=notification_deliveries)
)
_lease_end = bindparam("lease_end", type_=UTCDateTime)
_LEASE = (
    update(notification_deliveries)
    .where(_deliveries.id.in_(bindparam("ids", expanding=True)))
    .values(
        lease_owner=bindparam("owner"),
        lease_token=bindparam("token"),
        # next_attempt_time is left alone: it is indexed (see the module's
        # docstring), and the claim's filter on the lease keeps the row away.
        lease_expire_time=_lease_end,
        attempt_count=_deliveries.attempt_count + 1,
        update_time=bindparam("now", type_=UTCDateTime),
    )
)
_CLAIMED_DETAILS = (
    select(
        notification_deliveries,
        _events.id.label("e_id"),
        _events.partner_id.label("e_partner_id"),
        _events.event_type.label("e_event_type"),
        _events.event_id.label("e_event_id"),
        _events.payload.label("e_payload"),
        _events.is_test.label("e_is_test"),
        _events.create_time.label("e_create_time"),
        _configs.id.label("c_id"),
        _configs.callback_url.label("c_callback_url"),
        _configs.request_timeout_seconds.label("c_timeout"),
        _configs.api_key_key_id.label("c_key_id"),
        _configs.api_key_ciphertext.label("c_key_blob"),
        _configs.signature_scheme.label("c_scheme"),
    )
    .select_from(
        notification_deliveries.outerjoin(
            notification_events, _events.id == _deliveries.event_pk
        ).outerjoin(callback_configs, _configs.id == _deliveries.callback_config_id)
    )
    .where(_deliveries.id.in_(bindparam("ids", expanding=True)))
)
# See settle_many for why the lease token and the state are in the WHERE.
_SETTLE = (
    update(notification_deliveries)
    .where(
        _deliveries.id == bindparam("b_id"),
        _deliveries.lease_token == bindparam("b_token"),
        _deliveries.state == DeliveryState.PENDING,
    )
    .values(
        state=bindparam("b_state"),
        round_failures=bindparam("b_round_failures"),
        next_attempt_time=bindparam("b_next", type_=UTCDateTime),
        lease_owner=None,
        lease_token=None,
        lease_expire_time=None,
        last_error=bindparam("b_error"),
        update_time=bindparam("b_now", type_=UTCDateTime),
    )
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


def _delivery(m: Any) -> DeliveryRecord:
    next_attempt = m["next_attempt_time"]
    lease_end = m.get("lease_expire_time")
    if next_attempt is not None and lease_end is not None and lease_end > next_attempt:
        # Held by a dispatcher: the next attempt is due when the lease ends
        # (if this one never reports), which is what the partner is shown.
        next_attempt = lease_end
    return DeliveryRecord(
        id=m["id"],
        partner_id=m["partner_id"],
        kind=m["kind"],
        event_pk=m["event_pk"],
        callback_config_id=m["callback_config_id"],
        transaction_id=m["transaction_id"],
        state=m["state"],
        attempt_count=m["attempt_count"],
        round_failures=m["round_failures"],
        next_attempt_time=next_attempt,
        last_error=m["last_error"],
        create_time=m["create_time"],
        update_time=m["update_time"],
        event_id=m.get("ev_event_id") or "",
        event_type=m.get("ev_event_type") or "",
    )


def new_delivery(
    *,
    partner_id: str,
    kind: str,
    event_pk: str | None,
    config_id: str,
    now: datetime,
    ids: tuple[str, str] | None = None,
    event_id: str = "",
    event_type: str = "",
) -> DeliveryRecord:
    """A fresh PENDING delivery due now, with its own transactionId.
    ``ids``: its id and transactionId, when the caller drew them in bulk
    (a version 7 id, ``domain.ids``); ``event_id`` and ``event_type``: its
    event's, for the answer of a publish."""
    delivery_id, transaction_id = ids or (uuid7_string(), uuid4_string())
    return DeliveryRecord(
        id=delivery_id,
        partner_id=partner_id,
        kind=kind,
        event_pk=event_pk,
        callback_config_id=config_id,
        transaction_id=transaction_id,
        state=DeliveryState.PENDING,
        attempt_count=0,
        round_failures=0,
        next_attempt_time=now,
        last_error=None,
        create_time=now,
        update_time=now,
        event_id=event_id,
        event_type=event_type,
    )


class FreshDelivery(NamedTuple):
    """What differs between the deliveries one batch publish queues."""

    id: str
    transaction_id: str
    event_pk: str
    config_id: str
    event_id: str
    event_type: str


def new_deliveries(
    *, partner_id: str, kind: str, now: datetime, fresh: Sequence[FreshDelivery]
) -> list[DeliveryRecord]:
    """The records ``new_delivery`` would make for each of ``fresh``, built
    by copying one template's attributes: a frozen dataclass's ``__init__``
    sets each of a record's 15 fields through ``object.__setattr__`` (3.9 µs
    a record, against 1.2 µs this way), and a batch publish makes a thousand.
    The records stay frozen (assignment still raises); only their
    construction skips ``__init__``."""
    if not fresh:
        return []
    first = fresh[0]
    shared = vars(
        new_delivery(
            partner_id=partner_id,
            kind=kind,
            event_pk=first.event_pk,
            config_id=first.config_id,
            now=now,
            ids=(first.id, first.transaction_id),
        )
    )
    make = object.__new__
    records = []
    for f in fresh:
        record = make(DeliveryRecord)
        vars(record).update(
            shared,
            id=f.id,
            transaction_id=f.transaction_id,
            event_pk=f.event_pk,
            callback_config_id=f.config_id,
            event_id=f.event_id,
            event_type=f.event_type,
        )
        records.append(record)
    return records


async def insert_delivery(conn: Writer, record: DeliveryRecord) -> None:
    """Queues a delivery (in the unit of work's one statement, store/batch.py)."""
    await batch.write(
        conn,
        _INSERT_DELIVERY,
        {
            "id": record.id,
            "partner_id": record.partner_id,
            "kind": record.kind,
            "event_pk": record.event_pk,
            "callback_config_id": record.callback_config_id,
            "transaction_id": record.transaction_id,
            "state": record.state,
            "attempt_count": record.attempt_count,
            "round_failures": record.round_failures,
            "next_attempt_time": record.next_attempt_time,
            "last_error": record.last_error,
            "create_time": record.create_time,
            "update_time": record.update_time,
        },
    )


async def insert_deliveries(conn: AsyncConnection, records: Sequence[DeliveryRecord]) -> None:
    """Queues many fresh deliveries, one statement each: batches reach here
    on SQLite only; PostgreSQL's are queued by ``publish_many``."""
    for record in records:
        await insert_delivery(conn, record)


# PublishEvent on PostgreSQL: the event, its delivery (when the partner
# subscribed the type) and the dispatchers' wake-up in one statement, run in
# autocommit: one round trip instead of five (BEGIN, insert, subscription
# read, insert, COMMIT), each of which costs the server a socket write and a
# backend wake-up. ON CONFLICT DO NOTHING waits for a concurrent insert of
# the same id to end, so a duplicate is always a committed event.
_PUBLISH_ONE_PG = """
WITH ev AS (
    INSERT INTO notification_events
        (id, partner_id, event_type, event_id, payload, is_test, create_time)
    VALUES ($1, $2, $3, $4, $5, false, $6)
    ON CONFLICT (partner_id, event_id) DO NOTHING
    RETURNING id
), dl AS (
    INSERT INTO notification_deliveries
        (id, partner_id, kind, event_pk, callback_config_id, transaction_id, state,
         attempt_count, round_failures, next_attempt_time, last_error, create_time, update_time)
    SELECT $7, $2, $10, ev.id, s.callback_config_id, $8, $11, 0, 0, $6, NULL, $6, $6
    FROM ev JOIN notification_subscriptions s ON s.partner_id = $2 AND s.event_type = $3
    RETURNING callback_config_id
)
SELECT (SELECT count(*) FROM ev) AS inserted,
       (SELECT callback_config_id FROM dl) AS config_id,
       (SELECT pg_notify($9, '') FROM dl) AS notified
"""


async def publish_one(
    conn: AsyncConnection, event: EventRecord, delivery_id: str, transaction_id: str
) -> tuple[bool, str | None]:
    """PostgreSQL, in autocommit: stores the event unless its id was published
    before and, when it is new and its type subscribed, queues its delivery
    (``delivery_id``, ``transaction_id``) and wakes the dispatchers, all in
    one statement. Returns whether the event was inserted and the
    configuration its delivery goes to (None: nothing queued)."""
    result = await conn.exec_driver_sql(
        _PUBLISH_ONE_PG,
        (
            event.id,
            event.partner_id,
            event.event_type,
            event.event_id,
            event.payload,
            event.create_time,
            delivery_id,
            transaction_id,
            DUE_CHANNEL,
            str(DeliveryKind.EVENT),
            str(DeliveryState.PENDING),
        ),
    )
    row = result.one()
    return bool(row.inserted), row.config_id


# BatchPublishEvents on PostgreSQL, as PublishEvent's statement for many
# events: the new events, the deliveries of those whose type the partner
# subscribed, and the dispatchers' wake-up, in one statement run in
# autocommit: one round trip instead of six (BEGIN, the events, the
# subscriptions, the deliveries, the earlier deliveries, COMMIT). A batch of
# nine events a call cost ``serve`` ~5 ms of CPU that way, most of it
# SQLAlchemy and asyncpg per round trip (docs/delivery.md, round 7). Ids that
# were published before are not inserted (ON CONFLICT waits for a concurrent
# insert of the same id to end, so they are committed events) and are read
# back by the caller.
_PUBLISH_MANY_PG = """
WITH ev AS (
    INSERT INTO notification_events
        (id, partner_id, event_type, event_id, payload, is_test, create_time)
    SELECT u.id, $5, u.event_type, u.event_id, u.payload, false, $6
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
        AS u(id, event_type, event_id, payload)
    ON CONFLICT (partner_id, event_id) DO NOTHING
    RETURNING id, event_type
), dl AS (
    INSERT INTO notification_deliveries
        (id, partner_id, kind, event_pk, callback_config_id, transaction_id, state,
         attempt_count, round_failures, next_attempt_time, last_error, create_time, update_time)
    SELECT $10 || substr(gen_random_uuid()::text, 16), $5, $8, ev.id, s.callback_config_id,
           gen_random_uuid()::text, $9, 0, 0, $6, NULL, $6, $6
    FROM ev
    JOIN notification_subscriptions s ON s.partner_id = $5 AND s.event_type = ev.event_type
    RETURNING id, transaction_id, event_pk, callback_config_id
)
SELECT (SELECT array_agg(id) FROM ev) AS inserted,
       (SELECT array_agg(ARRAY[event_pk, callback_config_id, id, transaction_id]) FROM dl)
           AS queued,
       (SELECT pg_notify($7, '') WHERE EXISTS (SELECT 1 FROM dl)) AS notified
"""
# The deliveries' ids (and transactionIds) are drawn by PostgreSQL so that no
# row of the deliveries' insert has to be matched back to its input row: that
# match, planned generically for a parameter of unknown length, was a nested
# loop over the batch for each event (499,500 comparisons and 150 ms for
# 1,000). transactionIds: gen_random_uuid (version 4, as uuid4_strings).
# Ids: version 7 of the batch's millisecond, as uuid7_strings: the prefix
# from domain.ids.uuid7_prefix ($10), completed by the last 21 characters of
# a version 4 UUID (its random bits, the variant digit among them).


class BatchStored(NamedTuple):
    """What ``publish_many`` stored: the inserted events' primary keys, and
    for each queued delivery its event's primary key, configuration id,
    delivery id and transactionId."""

    inserted: frozenset[str]
    queued: list[tuple[str, str, str, str]]


async def publish_many(conn: AsyncConnection, events: Sequence[EventRecord]) -> BatchStored:
    """PostgreSQL, in autocommit: stores the ``events`` (distinct ids, one
    partner, created at once) whose ids are new and queues a delivery for
    each whose type is subscribed, then wakes the dispatchers, in one
    statement."""
    first = events[0]
    result = await conn.exec_driver_sql(
        _PUBLISH_MANY_PG,
        (
            [e.id for e in events],
            [e.event_type for e in events],
            [e.event_id for e in events],
            [e.payload for e in events],
            first.partner_id,
            first.create_time,
            DUE_CHANNEL,
            str(DeliveryKind.EVENT),
            str(DeliveryState.PENDING),
            uuid7_prefix(unix_millis(first.create_time)),
        ),
    )
    row = result.one()
    queued = [
        (pk, config, delivery, transaction)
        for pk, config, delivery, transaction in row.queued or ()
    ]
    return BatchStored(frozenset(row.inserted or ()), queued)


async def wake_dispatchers(conn: AsyncConnection) -> None:
    """Tells the listening dispatchers, on commit, that deliveries are due
    (PostgreSQL; SQLite dispatchers poll)."""
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql("SELECT pg_notify($1, '')", (DUE_CHANNEL,))


def _delivery_select() -> Any:
    return select(
        notification_deliveries,
        _events.event_id.label("ev_event_id"),
        _events.event_type.label("ev_event_type"),
    ).select_from(
        notification_deliveries.outerjoin(notification_events, _events.id == _deliveries.event_pk)
    )


async def deliveries_of_event(conn: AsyncConnection, event_pk: str) -> list[DeliveryRecord]:
    """The deliveries queued for an event."""
    stmt = _delivery_select().where(_deliveries.event_pk == event_pk)
    return [_delivery(r._mapping) for r in await conn.execute(stmt)]


async def deliveries_of_events(
    conn: AsyncConnection, event_pks: Sequence[str]
) -> dict[str, list[DeliveryRecord]]:
    """The deliveries queued for each of many events (by event key)."""
    found: dict[str, list[DeliveryRecord]] = defaultdict(list)
    if event_pks:
        stmt = _delivery_select().where(_deliveries.event_pk.in_(list(event_pks)))
        for row in await conn.execute(stmt):
            delivery = _delivery(row._mapping)
            found[str(delivery.event_pk)].append(delivery)
    return found


async def get_delivery(
    conn: AsyncConnection, partner_id: str, delivery_id: str
) -> DeliveryRecord | None:
    """The partner's delivery; None when absent or another partner's."""
    stmt = _delivery_select().where(
        _deliveries.id == delivery_id, _deliveries.partner_id == partner_id
    )
    row = (await conn.execute(stmt)).first()
    return _delivery(row._mapping) if row else None


_CANCEL_FOR_CONFIG = (
    update(notification_deliveries)
    .where(
        _deliveries.callback_config_id == bindparam("b_config_id"),
        _deliveries.state == DeliveryState.PENDING,
    )
    .values(
        state=DeliveryState.CANCELLED,
        next_attempt_time=None,
        lease_owner=None,
        lease_token=None,
        lease_expire_time=None,
        last_error="the callback configuration was deleted",
        update_time=bindparam("b_now", type_=UTCDateTime),
    )
)


async def cancel_for_config(conn: Writer, config_id: str, now: datetime) -> None:
    """Cancels every pending delivery to a configuration (it is being
    deleted); in the unit of work's one statement (store/batch.py)."""
    await batch.write(conn, _CANCEL_FOR_CONFIG, {"b_config_id": config_id, "b_now": now})


async def requeue(conn: AsyncConnection, delivery_id: str, now: datetime) -> None:
    """Starts a new round of attempts for a finished delivery (redelivery)."""
    await conn.execute(
        update(notification_deliveries)
        .where(_deliveries.id == delivery_id)
        .values(
            state=DeliveryState.PENDING,
            round_failures=0,
            next_attempt_time=now,
            lease_owner=None,
            lease_token=None,
            lease_expire_time=None,
            update_time=now,
        )
    )


async def claim_due(
    conn: AsyncConnection,
    *,
    now: datetime,
    limit: int,
    owner: str,
    token: str,
    lease_margin: timedelta,
    on_admission: Callable[[Admission], None] | None = None,
    skip_configs: Sequence[str] = (),
) -> list[ClaimedDelivery]:
    """Leases up to ``limit`` due deliveries to ``owner`` and returns them.

    Each lease lasts the target's request timeout plus ``lease_margin``
    (``lease_expire_time``); a dispatcher that dies mid-flight leaves the row
    claimable again once the lease runs out.

    Before leasing, ``endpoint_health.admit`` applies the configurations'
    gates: rows of a disabled configuration are paused, rows held by a
    Retry-After or beyond the per-second cap are pushed back, and rows of a
    rate-limited configuration get a reserved send time (``send_at``; the
    lease is longer by the wait). Rows of ``skip_configs`` are left alone.
    """
    params = {"now": now, "limit": limit, "skip": list(skip_configs)}
    rows = (await conn.execute(_DUE, params)).all()
    if not rows:
        return []
    admission = await admit(
        conn,
        [
            DueRow(
                r.id,
                r.partner_id,
                r.callback_config_id,
                r.c_state,
                r.c_reason,
                r.c_rate,
                r.h_hold_until,
            )
            for r in rows
        ],
        now,
        owner,
    )
    if on_admission is not None:
        on_admission(admission)
    admitted = set(admission.lease)
    rows = [r for r in rows if r.id in admitted]
    if not rows:
        return []
    by_timeout: dict[int, list[str]] = defaultdict(list)
    for row in rows:
        # A reserved slot lies at most endpoint_health.SLOT_HORIZON ahead.
        wait = 1 if row.id in admission.send_at else 0
        by_timeout[int(row.request_timeout_seconds or 0) + wait].append(row.id)
    for timeout, ids in by_timeout.items():
        lease_end = now + timedelta(seconds=timeout) + lease_margin
        await conn.execute(
            _LEASE,
            {"ids": ids, "owner": owner, "token": token, "lease_end": lease_end, "now": now},
        )
    claimed = []
    leased = [row.id for row in rows]
    details = (await conn.execute(_CLAIMED_DETAILS, {"ids": leased})).all()
    # What signing needs, read once per configuration for the whole batch.
    secrets = await live_secrets_of(conn, {d.c_id for d in details if d.c_id is not None}, now)
    for row in details:
        m = row._mapping
        event = None
        if m["e_id"] is not None:
            event = EventRecord(
                id=m["e_id"],
                partner_id=m["e_partner_id"],
                event_type=m["e_event_type"],
                event_id=m["e_event_id"],
                payload=m["e_payload"],
                is_test=bool(m["e_is_test"]),
                create_time=m["e_create_time"],
            )
        target = None
        if m["c_id"] is not None:
            target = TargetRecord(
                m["c_id"],
                m["c_callback_url"],
                m["c_timeout"],
                Sealed(m["c_key_id"], m["c_key_blob"]),
                m["c_scheme"],
            )
        delivery = _delivery(
            {
                **m,
                "ev_event_id": event.event_id if event else "",
                "ev_event_type": event.event_type if event else "",
            }
        )
        claimed.append(
            ClaimedDelivery(
                delivery,
                token,
                event,
                target,
                admission.send_at.get(delivery.id),
                tuple(secrets[target.config_id]) if target is not None else None,
            )
        )
    # In due order (the details query's order is the database's choice), so
    # the dispatcher starts them oldest first: resumed and recovered
    # deliveries go out in publish order.
    position = {delivery_id: i for i, delivery_id in enumerate(leased)}
    claimed.sort(key=lambda c: position[c.delivery.id])
    return claimed


# The claim on PostgreSQL, in one statement run in autocommit (one round trip;
# it was BEGIN, the locking read, one lease update per timeout, the details,
# the secrets and COMMIT). The due rows are locked (SKIP LOCKED: concurrent
# dispatchers take disjoint rows) and those of configurations with no gate
# (not disabled, not held by a Retry-After, no per-second cap) are leased at
# once and returned with what sending and signing need: event, target, and
# the live secrets on the first row of each configuration. Rows behind a gate
# are returned unleased (``gated``) for ``claim_due``'s transactional path.
# The lease finds its rows by the locked versions' ctid, not by id: no descent
# of the primary key (a B-tree of the whole table) per row. Should a row have
# changed between the statement's snapshot and its lock (EvalPlanQual), the
# ctid is the new version's, which the snapshot does not see: that row is
# locked but not leased, and simply stays due for the next claim. The text
# is per limit: see claim_statement.
_CLAIM_PG_TEMPLATE = """
WITH locked AS MATERIALIZED (
    SELECT d.id, d.ctid AS row_tid, d.next_attempt_time AS due_at,
           (c.state IS DISTINCT FROM $6 AND c.max_deliveries_per_second IS NULL
            AND (h.hold_until IS NULL OR h.hold_until <= $1)) AS plain,
           COALESCE(c.request_timeout_seconds, 0) AS timeout
    FROM notification_deliveries d
    LEFT JOIN callback_configs c ON c.id = d.callback_config_id
    LEFT JOIN endpoint_health h ON h.callback_config_id = d.callback_config_id
    WHERE d.state = 'PENDING' AND d.next_attempt_time <= $1
      AND (d.lease_expire_time IS NULL OR d.lease_expire_time <= $1)
      AND d.callback_config_id <> ALL($3)
    ORDER BY d.next_attempt_time
    LIMIT {lock_limit}
    FOR UPDATE OF d SKIP LOCKED
), due AS (
    -- locked holds at most $2 rows already; $2 is named here so that every
    -- text of the claim has the same parameters (see claim_statement).
    SELECT * FROM locked LIMIT $2
), leased AS (
    UPDATE notification_deliveries d
    SET lease_owner = $4, lease_token = $5,
        lease_expire_time = $1 + make_interval(secs => due.timeout) + $7,
        attempt_count = d.attempt_count + 1,
        update_time = $1
    FROM due
    WHERE d.ctid = due.row_tid AND due.plain
    RETURNING d.*, due.due_at
), numbered AS (
    SELECT leased.*, row_number() OVER (PARTITION BY callback_config_id) AS nth FROM leased
)
SELECT l.id, l.partner_id, l.kind, l.event_pk, l.callback_config_id, l.transaction_id,
       l.state, l.attempt_count, l.round_failures, l.next_attempt_time, l.last_error,
       l.create_time, l.update_time, l.due_at, false AS gated,
       e.id AS e_id, e.event_type AS e_event_type, e.event_id AS e_event_id,
       e.payload AS e_payload, e.is_test AS e_is_test, e.create_time AS e_create_time,
       c.id AS c_id, c.callback_url AS c_callback_url, c.request_timeout_seconds AS c_timeout,
       c.api_key_key_id AS c_key_id, c.api_key_ciphertext AS c_key_blob,
       c.signature_scheme AS c_scheme,
       sec.ids AS s_ids, sec.key_ids AS s_key_ids, sec.blobs AS s_blobs,
       sec.creates AS s_creates, sec.expires AS s_expires, sec.retires AS s_retires
FROM numbered l
LEFT JOIN notification_events e ON e.id = l.event_pk
LEFT JOIN callback_configs c ON c.id = l.callback_config_id
LEFT JOIN LATERAL (
    SELECT array_agg(s.id) AS ids, array_agg(s.key_id) AS key_ids,
           array_agg(s.ciphertext) AS blobs, array_agg(s.create_time) AS creates,
           array_agg(s.expire_time) AS expires, array_agg(s.retire_time) AS retires
    FROM callback_secrets s
    WHERE l.nth = 1 AND s.callback_config_id = l.callback_config_id
      AND s.expire_time > $1 AND (s.retire_time IS NULL OR s.retire_time > $1)
) sec ON true
UNION ALL
SELECT due.id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       due.due_at, true, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM due WHERE NOT due.plain
ORDER BY due_at
"""
# The limits that get a claim text of their own: the first few a process
# claims with (its batch size among them). Any other limit shares the text
# whose LIMIT is a parameter, planned afresh on every run, as all were before.
_CONSTANT_LIMITS = 8
_claim_statements: dict[int, str] = {}
_CLAIM_ANY_LIMIT = _CLAIM_PG_TEMPLATE.replace("{lock_limit}", "$2")


def claim_statement(limit: int) -> str:
    """The claim's SQL for ``limit`` rows (parameters as in ``claim_plain``).

    The locking scan's LIMIT is written as a constant, and the state as a
    literal, so that PostgreSQL can run the prepared statement on a generic
    plan: with ``state = $6`` the due index's predicate (``state =
    'PENDING'``) could not be proven, and with ``LIMIT $2`` the planner
    assumed a tenth of the table, so the generic plan was a sequential scan
    and PostgreSQL planned the claim afresh on every run (~0.8 ms, the claim
    on a million's whole growth over a small queue, whose generic plan was
    cheap). One text per limit, for the first ``_CONSTANT_LIMITS`` limits;
    each is prepared once per connection (asyncpg's statement cache)."""
    statement = _claim_statements.get(limit)
    if statement is None:
        if len(_claim_statements) >= _CONSTANT_LIMITS:
            return _CLAIM_ANY_LIMIT
        statement = _CLAIM_PG_TEMPLATE.replace("{lock_limit}", str(int(limit)))
        _claim_statements[limit] = statement
    return statement


async def claim_plain(
    pg: asyncpg.Connection,
    *,
    now: datetime,
    limit: int,
    owner: str,
    token: str,
    lease_margin: timedelta,
    skip_configs: Sequence[str] = (),
) -> tuple[list[ClaimedDelivery], int]:
    """PostgreSQL, on the driver's connection (``Database.driver``; in
    autocommit unless the caller opened a transaction): ``claim_due`` in one
    statement for the due deliveries of configurations without a gate.
    Returns those leased (in due order, with their live secrets) and how many
    due rows it left to ``claim_due`` because a gate applies to them (a
    disabled configuration, a Retry-After hold, a per-second cap)."""
    rows = await pg.fetch(
        claim_statement(limit),
        now,
        limit,
        list(skip_configs),
        owner,
        token,
        DISABLED,
        lease_margin,
    )
    claimed = []
    gated = 0
    secrets: dict[str, tuple[SecretRecord, ...]] = {}
    for row in rows:
        if row["gated"]:
            gated += 1
            continue
        config_id = row["c_id"]
        s_ids = row["s_ids"]
        if s_ids is not None or (config_id is not None and config_id not in secrets):
            secrets[config_id] = tuple(
                SecretRecord(secret_id, config_id, Sealed(key_id, blob), created, expires, retires)
                for secret_id, key_id, blob, created, expires, retires in zip(
                    s_ids or (),
                    row["s_key_ids"] or (),
                    row["s_blobs"] or (),
                    row["s_creates"] or (),
                    row["s_expires"] or (),
                    row["s_retires"] or (),
                    strict=True,
                )
            )
    for row in rows:
        if row["gated"]:
            continue
        event = None
        if row["e_id"] is not None:
            event = EventRecord(
                row["e_id"],
                row["partner_id"],
                row["e_event_type"],
                row["e_event_id"],
                row["e_payload"],
                bool(row["e_is_test"]),
                row["e_create_time"],
            )
        target = None
        config_id = row["c_id"]
        if config_id is not None:
            target = TargetRecord(
                config_id,
                row["c_callback_url"],
                row["c_timeout"],
                Sealed(row["c_key_id"], row["c_key_blob"]),
                row["c_scheme"],
            )
        delivery = DeliveryRecord(
            id=row["id"],
            partner_id=row["partner_id"],
            kind=row["kind"],
            event_pk=row["event_pk"],
            callback_config_id=row["callback_config_id"],
            transaction_id=row["transaction_id"],
            state=row["state"],
            attempt_count=row["attempt_count"],
            round_failures=row["round_failures"],
            next_attempt_time=row["next_attempt_time"],
            last_error=row["last_error"],
            create_time=row["create_time"],
            update_time=row["update_time"],
            event_id=event.event_id if event else "",
            event_type=event.event_type if event else "",
        )
        claimed.append(
            ClaimedDelivery(
                delivery,
                token,
                event,
                target,
                None,
                secrets[config_id] if target is not None else None,
            )
        )
    return claimed, gated


_RELEASE = (
    update(notification_deliveries)
    .where(
        _deliveries.id.in_(bindparam("ids", expanding=True)),
        _deliveries.lease_token == bindparam("token"),
        _deliveries.state == DeliveryState.PENDING,
    )
    .values(
        next_attempt_time=bindparam("at", type_=UTCDateTime),
        attempt_count=_deliveries.attempt_count - 1,
        lease_owner=None,
        lease_token=None,
        lease_expire_time=None,
    )
)


async def release(conn: AsyncConnection, ids: Sequence[str], token: str, at: datetime) -> None:
    """Gives leased deliveries back unattempted, due again at ``at``: the
    claim's attempt number is handed back, so no attempt is lost or skipped
    (only while the lease is still ours)."""
    if ids:
        await conn.execute(_RELEASE, {"ids": list(ids), "token": token, "at": at})


async def settle_many(conn: AsyncConnection, settlements: Sequence[Mapping[str, Any]]) -> None:
    """Writes claimed deliveries' outcomes in one statement. Each mapping has
    ``b_id``, ``b_token``, ``b_state``, ``b_round_failures``, ``b_next``,
    ``b_error`` and ``b_now``. A row is written only while its lease is still
    ours and it is still PENDING: the token fences off a dispatcher whose
    lease ran out, and a cancellation is never undone."""
    if not settlements:
        return
    await conn.execute(_SETTLE, list(settlements))


async def finish_unleased(
    conn: AsyncConnection, delivery_id: str, *, state: str, error: str | None, now: datetime
) -> None:
    """Sets the final state of a delivery that was never queued (a test send)."""
    await conn.execute(
        update(notification_deliveries)
        .where(_deliveries.id == delivery_id)
        .values(state=state, next_attempt_time=None, last_error=error, update_time=now)
    )


async def count_by_state(conn: AsyncConnection) -> dict[str, int]:
    """Deliveries per state (operators, benchmarks)."""
    stmt = select(_deliveries.state, func.count()).group_by(_deliveries.state)
    return {state: int(n) for state, n in await conn.execute(stmt)}
