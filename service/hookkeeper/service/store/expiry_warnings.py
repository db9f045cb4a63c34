"""Repository functions of the expiry-warning mailer.

Work is shared through the database: the unique (secret, threshold) row is
the "sent at most once" guarantee, and claims use ``FOR UPDATE SKIP LOCKED``
on PostgreSQL (SQLite's single writer serialises them anyway) plus a lease,
so several mailers never send the same warning at the same time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from hookkeeper.service.store.mail_tables import (
    CANCELLED,
    PENDING,
    SENT,
    SUPERSEDED,
    expiry_warnings,
)
from hookkeeper.service.store.records import ClaimedWarning, CurrentSecret
from hookkeeper.service.store.tables import callback_configs, callback_secrets

_w = expiry_warnings.c
_c = callback_configs.c
_s = callback_secrets.c


def _is_current_secret() -> ColumnElement[bool]:
    """True for the newest secret row of its configuration (a refresh inserts
    a newer one; ordering by creation time, then id, as the domain does)."""
    newer = callback_secrets.alias("newer")
    return ~exists().where(
        newer.c.callback_config_id == _s.callback_config_id,
        or_(
            newer.c.create_time > _s.create_time,
            and_(newer.c.create_time == _s.create_time, newer.c.id > _s.id),
        ),
    )


async def current_secrets_expiring(
    conn: AsyncConnection, now: datetime, horizon: timedelta
) -> list[CurrentSecret]:
    """Current secrets expiring after ``now`` and within ``horizon``."""
    stmt = (
        select(_s.id, _s.callback_config_id, _s.create_time, _s.expire_time)
        .select_from(callback_configs.join(callback_secrets, _s.callback_config_id == _c.id))
        .where(
            _c.secret_expire_time > now,
            _c.secret_expire_time <= now + horizon,
            _s.expire_time > now,
            _is_current_secret(),
        )
    )
    return [
        CurrentSecret(r.id, r.callback_config_id, r.create_time, r.expire_time)
        for r in await conn.execute(stmt)
    ]


async def existing_thresholds(
    conn: AsyncConnection, secret_ids: Iterable[str]
) -> set[tuple[str, int]]:
    """The (secret, threshold) pairs that already have a warning row."""
    ids = list(secret_ids)
    if not ids:
        return set()
    stmt = select(_w.secret_id, _w.threshold_days).where(_w.secret_id.in_(ids))
    return {(r.secret_id, r.threshold_days) for r in await conn.execute(stmt)}


async def schedule(
    conn: AsyncConnection, secret: CurrentSecret, threshold_days: int, now: datetime
) -> bool:
    """Records the warning due for ``secret``; False if one already exists.

    Pending warnings of farther thresholds of the same secret are superseded:
    the nearer one tells the partner more, and sending both would be noise.
    """
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "secret_id": secret.secret_id,
        "callback_config_id": secret.callback_config_id,
        "threshold_days": threshold_days,
        "state": PENDING,
        "attempts": 0,
        "next_attempt_time": now,
        "create_time": now,
    }
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(expiry_warnings)
        .values(values)
        .on_conflict_do_nothing(index_elements=["secret_id", "threshold_days"])
    )
    inserted = (await conn.execute(stmt)).rowcount == 1
    await conn.execute(
        update(expiry_warnings)
        .where(
            _w.secret_id == secret.secret_id,
            _w.state == PENDING,
            _w.threshold_days > threshold_days,
        )
        .values(state=SUPERSEDED)
    )
    return inserted


async def claim_due(
    conn: AsyncConnection, now: datetime, lease: timedelta, limit: int
) -> list[ClaimedWarning]:
    """Leases up to ``limit`` due warnings of current, unexpired secrets.

    Warnings whose secret stopped being current or expired are cancelled on
    the way. Each claim pushes ``next_attempt_time`` out by ``lease``, so a
    mailer that dies mid-send leaves the warning to be retried, not lost.
    """
    stmt = (
        select(
            _w.id,
            _w.attempts,
            _w.threshold_days,
            _w.callback_config_id,
            _c.partner_id,
            _c.callback_url,
            _c.contact_email,
            _s.expire_time,
            case((and_(_is_current_secret(), _s.expire_time > now), True), else_=False).label(
                "relevant"
            ),
        )
        .select_from(
            expiry_warnings.join(callback_secrets, _s.id == _w.secret_id).join(
                callback_configs, _c.id == _w.callback_config_id
            )
        )
        .where(_w.state == PENDING, _w.next_attempt_time <= now)
        .order_by(_w.next_attempt_time, _w.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        # Lock only the warning rows: refreshes of the configuration go on.
        stmt = stmt.with_for_update(skip_locked=True, of=expiry_warnings)
    rows = (await conn.execute(stmt)).all()
    claimed: list[ClaimedWarning] = []
    stale: list[str] = []
    for row in rows:
        if not row.relevant:
            stale.append(row.id)
            continue
        claimed.append(
            ClaimedWarning(
                id=row.id,
                attempts=row.attempts + 1,
                threshold_days=row.threshold_days,
                callback_config_id=row.callback_config_id,
                partner_id=row.partner_id,
                callback_url=row.callback_url,
                contact_email=row.contact_email,
                expire_time=row.expire_time,
            )
        )
    if stale:
        await conn.execute(update(expiry_warnings).where(_w.id.in_(stale)).values(state=CANCELLED))
    if claimed:
        await conn.execute(
            update(expiry_warnings)
            .where(_w.id.in_([c.id for c in claimed]))
            .values(attempts=_w.attempts + 1, next_attempt_time=now + lease)
        )
    return claimed


async def mark_sent(conn: AsyncConnection, claim: ClaimedWarning, now: datetime) -> bool:
    """Records a successful send; False if the lease was lost meanwhile."""
    result = await conn.execute(
        update(expiry_warnings)
        .where(_w.id == claim.id, _w.state == PENDING, _w.attempts == claim.attempts)
        .values(state=SENT, sent_time=now, last_error=None)
    )
    return result.rowcount == 1


async def mark_failed(
    conn: AsyncConnection, claim: ClaimedWarning, retry_at: datetime, error: str
) -> None:
    """Records a failed send and when to try again."""
    await conn.execute(
        update(expiry_warnings)
        .where(_w.id == claim.id, _w.state == PENDING, _w.attempts == claim.attempts)
        .values(next_attempt_time=retry_at, last_error=error[:1000])
    )


async def count_expiring(
    conn: AsyncConnection, now: datetime, windows_days: Iterable[int]
) -> dict[int, int]:
    """How many configurations' current secrets expire within each window."""
    days = list(windows_days)
    columns = [
        func.coalesce(
            func.sum(case((_c.secret_expire_time <= now + timedelta(days=d), 1), else_=0)), 0
        ).label(f"within_{d}")
        for d in days
    ]
    stmt = select(*columns).where(_c.secret_expire_time > now)
    row = (await conn.execute(stmt)).one()
    return {d: int(row[i]) for i, d in enumerate(days)}
