"""Repository functions of endpoint health: configuration state changes,
pausing and resuming deliveries, the shared throttle rows, and the disable
notices the mailer sends. Each takes the connection of a transaction opened
by the caller.

The per-second cap is a next-free-slot row per configuration
(``endpoint_health.next_slot_time``), read and advanced under a row lock in
the dispatchers' claim (``admit``): every dispatcher reserves its send times
from the same row, so the cap holds across processes. Rows are locked in
configuration-id order, so two claims never deadlock.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, exists, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from hookkeeper.service.domain import throttling
from hookkeeper.service.domain.endpoint_health import ACTIVE, DISABLED
from hookkeeper.service.store.delivery_tables import (
    notification_attempts,
    notification_deliveries,
)
from hookkeeper.service.store.endpoint_tables import (
    NOTICE_PENDING,
    NOTICE_SENT,
    config_notices,
    endpoint_health,
)
from hookkeeper.service.store.tables import UTCDateTime, callback_configs

_h = endpoint_health.c
_n = config_notices.c
_d = notification_deliveries.c
_c = callback_configs.c

PENDING = "PENDING"
PAUSED = "PAUSED"
FAILED = "FAILED"
EVENT = "EVENT"
# How far ahead a claim reserves send slots of a rate-limited configuration.
SLOT_HORIZON = timedelta(milliseconds=500)

# Only for a configuration that still exists: one deleted while an attempt
# to it was in flight has no health to keep (and its row would break the
# foreign key, failing the whole batch of outcomes again and again).
_ENSURE_HEALTH = {
    name: dialect.insert(endpoint_health)
    .from_select(
        ["callback_config_id"],
        select(bindparam("callback_config_id", type_=String)).where(
            exists().where(_c.id == bindparam("callback_config_id"))
        ),
    )
    .on_conflict_do_nothing(index_elements=["callback_config_id"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_LOCK_HEALTH = (
    select(endpoint_health).where(_h.callback_config_id == bindparam("config_id")).with_for_update()
)
_UPDATE_HEALTH = update(endpoint_health).where(_h.callback_config_id == bindparam("b_config_id"))
_DEFER = (
    update(notification_deliveries)
    .where(_d.id == bindparam("b_id"), _d.state == PENDING)
    .values(next_attempt_time=bindparam("b_next", type_=UTCDateTime))
)
_INSERT_LOG = insert(notification_attempts)


def paused_error(reason: str | None) -> str:
    """The delivery log's text of a paused delivery."""
    return (
        f"paused, not attempted: the callback configuration is disabled ({reason or 'disabled'}); "
        "enable it to resume"
    )


# --- configuration state -------------------------------------------------


async def mark_disabled(conn: AsyncConnection, config_id: str, reason: str, now: datetime) -> bool:
    """ACTIVE → DISABLED with the reason; False (nothing written) when it was
    not active, so concurrent disablers record it, and tell the partner, once."""
    result = await conn.execute(
        update(callback_configs)
        .where(_c.id == config_id, _c.state == ACTIVE)
        .values(state=DISABLED, disable_reason=reason, disable_time=now, update_time=now)
    )
    return bool(result.rowcount == 1)


async def mark_active(conn: AsyncConnection, config_id: str, now: datetime) -> bool:
    """DISABLED → ACTIVE, forgetting the failure run and any hold; False when
    it was not disabled."""
    result = await conn.execute(
        update(callback_configs)
        .where(_c.id == config_id, _c.state == DISABLED)
        .values(state=ACTIVE, disable_reason=None, disable_time=None, update_time=now)
    )
    if result.rowcount != 1:
        return False
    await conn.execute(
        update(endpoint_health)
        .where(_h.callback_config_id == config_id)
        .values(failing_since=None, hold_until=None)
    )
    return True


# --- pausing and resuming ------------------------------------------------


@dataclass(frozen=True)
class PauseTarget:
    """A pending delivery to pause, with what its log entry names."""

    delivery_id: str
    partner_id: str


async def pause(
    conn: AsyncConnection,
    targets: Sequence[PauseTarget],
    reason: str | None,
    now: datetime,
    dispatcher: str,
) -> int:
    """PENDING → PAUSED, each with a delivery-log entry (attempt number 0:
    no request was made) saying why."""
    if not targets:
        return 0
    result = await conn.execute(
        update(notification_deliveries)
        .where(_d.id.in_([t.delivery_id for t in targets]), _d.state == PENDING)
        .values(
            state=PAUSED,
            next_attempt_time=None,
            lease_owner=None,
            lease_token=None,
            lease_expire_time=None,
            update_time=now,
        )
    )
    error = paused_error(reason)
    await conn.execute(
        _INSERT_LOG,
        [
            {
                "id": str(uuid.uuid4()),
                "delivery_id": t.delivery_id,
                "partner_id": t.partner_id,
                "attempt_number": 0,
                "start_time": now,
                "latency_ms": 0,
                "http_status": 0,
                "succeeded": False,
                "error": error,
                "dispatcher": dispatcher,
            }
            for t in targets
        ],
    )
    return int(result.rowcount)


async def pause_idle(conn: AsyncConnection, config_id: str, reason: str, now: datetime) -> int:
    """Pauses the configuration's pending deliveries that no dispatcher holds
    now; a held one settles first and is paused by the next claim."""
    rows = await conn.execute(
        select(_d.id, _d.partner_id).where(
            _d.callback_config_id == config_id,
            _d.state == PENDING,
            (_d.lease_expire_time.is_(None)) | (_d.lease_expire_time <= now),
        )
    )
    targets = [PauseTarget(r.id, r.partner_id) for r in rows]
    return await pause(conn, targets, reason, now, "disable")


async def resume_paused(conn: AsyncConnection, config_id: str, now: datetime) -> int:
    """PAUSED → PENDING in publish order, each with a fresh retry schedule."""
    rows = await conn.execute(
        select(_d.id)
        .where(_d.callback_config_id == config_id, _d.state == PAUSED)
        .order_by(_d.create_time, _d.id)
    )
    return await requeue_in_order(conn, [r.id for r in rows], now, from_state=PAUSED)


async def requeue_in_order(
    conn: AsyncConnection, delivery_ids: Sequence[str], now: datetime, *, from_state: str
) -> int:
    """Queues deliveries for a new round, due in the order given."""
    if not delivery_ids:
        return 0
    # Two statements: an executemany's row count is unknown on asyncpg.
    result = await conn.execute(
        update(notification_deliveries)
        .where(_d.id.in_(list(delivery_ids)), _d.state == from_state)
        .values(
            state=PENDING,
            round_failures=0,
            next_attempt_time=now,
            lease_owner=None,
            lease_token=None,
            lease_expire_time=None,
            update_time=now,
        )
    )
    last = len(delivery_ids) - 1
    await conn.execute(
        update(notification_deliveries)
        .where(_d.id == bindparam("b_id"), _d.state == PENDING)
        .values(next_attempt_time=bindparam("b_next", type_=UTCDateTime)),
        # All due now, a microsecond apart so the claim keeps their order.
        [
            {"b_id": delivery_id, "b_next": now - timedelta(microseconds=last - i)}
            for i, delivery_id in enumerate(delivery_ids)
        ],
    )
    return int(result.rowcount)


async def failed_since(conn: AsyncConnection, config_id: str, since: datetime) -> list[str]:
    """Deliveries of events to the configuration that ended failed at or
    after ``since``, in publish order."""
    rows = await conn.execute(
        select(_d.id)
        .where(
            _d.callback_config_id == config_id,
            _d.state == FAILED,
            _d.kind == EVENT,
            _d.update_time >= since,
        )
        .order_by(_d.create_time, _d.id)
    )
    return [r.id for r in rows]


# --- the shared throttle rows -------------------------------------------


@dataclass(frozen=True)
class Health:
    """A configuration's endpoint_health row."""

    failing_since: datetime | None
    hold_until: datetime | None
    next_slot_time: datetime | None


async def lock_health(conn: AsyncConnection, config_id: str) -> Health | None:
    """The configuration's row, created if missing, row-locked; None when
    the configuration no longer exists."""
    await conn.execute(_ENSURE_HEALTH[conn.dialect.name], {"callback_config_id": config_id})
    row = (await conn.execute(_LOCK_HEALTH, {"config_id": config_id})).first()
    if row is None:
        return None
    return Health(row.failing_since, row.hold_until, row.next_slot_time)


async def clear_failures(conn: AsyncConnection, config_ids: Sequence[str]) -> None:
    """Ends the run of failures of the configurations that have one (their
    attempts just succeeded); rows are locked in id order, as everywhere."""
    if not config_ids:
        return
    failing = (
        await conn.execute(
            select(_h.callback_config_id)
            .where(_h.callback_config_id.in_(sorted(config_ids)), _h.failing_since.is_not(None))
            .order_by(_h.callback_config_id)
            .with_for_update()
        )
    ).all()
    if failing:
        await conn.execute(
            update(endpoint_health)
            .where(_h.callback_config_id.in_([r.callback_config_id for r in failing]))
            .values(failing_since=None)
        )


async def write_health(conn: AsyncConnection, config_id: str, values: Mapping[str, Any]) -> None:
    """Updates columns of a (locked) row."""
    await conn.execute(_UPDATE_HEALTH, {"b_config_id": config_id, **values})


@dataclass(frozen=True)
class DueRow:
    """A due delivery as the claim saw it, with its configuration's gates."""

    id: str
    partner_id: str
    config_id: str
    config_state: str | None
    disable_reason: str | None
    rate: int | None
    hold_until: datetime | None


@dataclass
class Admission:
    """What the claim may lease now, and when each may be sent."""

    lease: list[str] = field(default_factory=list)
    # delivery id → earliest send time (rate-limited configurations only).
    send_at: dict[str, datetime] = field(default_factory=dict)
    paused: int = 0
    held: int = 0
    rate_deferred: int = 0


async def admit(
    conn: AsyncConnection, rows: Sequence[DueRow], now: datetime, dispatcher: str
) -> Admission:
    """Sorts the claim's due rows: a disabled configuration's are paused, a
    held one's (Retry-After) wait until the hold ends, a rate-limited one's
    get reserved send slots (the rest wait for their future slots), and the
    others are leased as before. Every row not leased is moved off the head
    of the queue, so a throttled endpoint never holds up the others."""
    out = Admission()
    to_pause: dict[str | None, list[PauseTarget]] = defaultdict(list)
    deferrals: list[dict[str, Any]] = []
    rated: dict[str, list[DueRow]] = defaultdict(list)
    for row in rows:
        if row.config_state == DISABLED:
            to_pause[row.disable_reason].append(PauseTarget(row.id, row.partner_id))
        elif row.hold_until is not None and row.hold_until > now:
            deferrals.append({"b_id": row.id, "b_next": row.hold_until})
            out.held += 1
        elif row.rate is not None:
            rated[row.config_id].append(row)
        else:
            out.lease.append(row.id)
    for config_id in sorted(rated):
        group = rated[config_id]
        rate = group[0].rate
        assert rate is not None
        health = await lock_health(conn, config_id) or Health(None, None, None)
        plan = throttling.plan_slots(
            health.next_slot_time, now=now, rate=rate, count=len(group), horizon=SLOT_HORIZON
        )
        for row, slot in zip(group, plan.taken, strict=False):
            out.lease.append(row.id)
            out.send_at[row.id] = slot
        for row, due in zip(group[len(plan.taken) :], plan.deferred, strict=True):
            deferrals.append({"b_id": row.id, "b_next": due})
        out.rate_deferred += len(plan.deferred)
        await write_health(conn, config_id, {"next_slot_time": plan.next_slot})
    if deferrals:
        await conn.execute(_DEFER, deferrals)
    for reason, targets in to_pause.items():
        out.paused += await pause(conn, targets, reason, now, dispatcher)
    return out


# --- disable notices -----------------------------------------------------


@dataclass(frozen=True)
class ClaimedNotice:
    """A disable notice a mailer holds, with what the message needs."""

    id: str
    attempts: int
    callback_config_id: str
    partner_id: str
    callback_url: str
    contact_email: str
    reason: str
    create_time: datetime


async def insert_notice(conn: AsyncConnection, config_id: str, reason: str, now: datetime) -> None:
    """Queues the e-mail telling the contact its configuration was disabled."""
    await conn.execute(
        insert(config_notices).values(
            id=str(uuid.uuid4()),
            callback_config_id=config_id,
            kind="DISABLED",
            reason=reason,
            state=NOTICE_PENDING,
            attempts=0,
            next_attempt_time=now,
            create_time=now,
        )
    )


async def claim_notices(
    conn: AsyncConnection, now: datetime, lease: timedelta, limit: int
) -> list[ClaimedNotice]:
    """Leases due notices (SKIP LOCKED on PostgreSQL), counting the attempt."""
    rows = (
        await conn.execute(
            select(
                _n.id,
                _n.attempts,
                _n.callback_config_id,
                _n.reason,
                _n.create_time,
                _c.partner_id,
                _c.callback_url,
                _c.contact_email,
            )
            .select_from(config_notices.join(callback_configs, _c.id == _n.callback_config_id))
            .where(_n.state == NOTICE_PENDING, _n.next_attempt_time <= now)
            .order_by(_n.next_attempt_time)
            .limit(limit)
            .with_for_update(skip_locked=True, of=config_notices)
        )
    ).all()
    claimed = []
    for r in rows:
        await conn.execute(
            update(config_notices)
            .where(_n.id == r.id)
            .values(attempts=r.attempts + 1, next_attempt_time=now + lease)
        )
        claimed.append(
            ClaimedNotice(
                r.id,
                r.attempts + 1,
                r.callback_config_id,
                r.partner_id,
                r.callback_url,
                r.contact_email,
                r.reason,
                r.create_time,
            )
        )
    return claimed


async def mark_notice_sent(conn: AsyncConnection, notice: ClaimedNotice, now: datetime) -> bool:
    """Records the send; False when another mailer re-claimed it meanwhile."""
    result = await conn.execute(
        update(config_notices)
        .where(_n.id == notice.id, _n.state == NOTICE_PENDING, _n.attempts == notice.attempts)
        .values(state=NOTICE_SENT, sent_time=now, last_error=None)
    )
    return bool(result.rowcount == 1)


async def mark_notice_failed(
    conn: AsyncConnection, notice: ClaimedNotice, retry_at: datetime, error: str
) -> None:
    """Schedules another attempt of a failed send."""
    await conn.execute(
        update(config_notices)
        .where(_n.id == notice.id, _n.attempts == notice.attempts)
        .values(next_attempt_time=retry_at, last_error=error[:500])
    )
