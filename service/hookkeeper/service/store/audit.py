"""Appending to, sealing and reading the audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookkeeper.service.store import batch
from hookkeeper.service.store.audit_tables import audit_events as t
from hookkeeper.service.store.batch import QueuedWrites, Writer

# Any constant will do: it names the one lock every sealer takes.
_SEAL_LOCK = 0x686B61756469  # "hkaudi"

_COLUMNS = (
    t.c.id,
    t.c.seq,
    t.c.event_time,
    t.c.actor,
    t.c.action,
    t.c.resource,
    t.c.partner_id,
    t.c.outcome,
    t.c.trace_id,
    t.c.count,
    t.c.prev_hash,
    t.c.hash,
)
_INSERT = t.insert()
# PostgreSQL: a batch of seals as one statement (unnest), not one per event.
_SEAL_PG = text(
    """
    UPDATE audit_events AS e SET seq = u.seq, prev_hash = u.prev_hash, hash = u.hash
    FROM unnest(CAST(:ids AS bigint[]), CAST(:seqs AS bigint[]),
                CAST(:prev_hashes AS text[]), CAST(:hashes AS text[]))
         AS u(id, seq, prev_hash, hash)
    WHERE e.id = u.id
    """
)
_SEAL = (
    update(t)
    .where(t.c.id == bindparam("b_id"))
    .values(seq=bindparam("b_seq"), prev_hash=bindparam("b_prev"), hash=bindparam("b_hash"))
)

Row = dict[str, Any]


async def insert(conn: Writer, rows: Sequence[Row]) -> None:
    """Appends unsealed events (dicts keyed by column name, without ``id``);
    one at a time they join the unit of work's queued writes (store/batch.py)."""
    if isinstance(conn, QueuedWrites):
        for row in rows:
            await batch.write(conn, _INSERT, row)
    elif len(rows) == 1 and batch.queueing(conn):
        await batch.write(conn, _INSERT, rows[0])
    elif rows:
        await conn.execute(_INSERT, list(rows))


async def lock_last_sealed(conn: AsyncConnection) -> tuple[int, str] | bool | None:
    """Takes the seal lock until the transaction ends, then returns the seq
    and hash of the last sealed event (None when there is none); False when
    another sealer holds the lock (PostgreSQL; SQLite writers are serialised
    by BEGIN IMMEDIATE already)."""
    if conn.dialect.name == "postgresql":
        got = await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _SEAL_LOCK})
        if not got:
            return False
    row = (
        await conn.execute(
            select(t.c.seq, t.c.hash).where(t.c.seq.is_not(None)).order_by(t.c.seq.desc()).limit(1)
        )
    ).first()
    return None if row is None else (int(row.seq), str(row.hash))


async def unsealed(conn: AsyncConnection, limit: int) -> list[Row]:
    """Committed events not sealed yet, in storage order."""
    query = select(*_COLUMNS).where(t.c.seq.is_(None)).order_by(t.c.id).limit(limit)
    return [dict(row._mapping) for row in await conn.execute(query)]


async def seal(conn: AsyncConnection, seals: Sequence[tuple[int, int, str, str]]) -> None:
    """Stores the seq and hashes of sealed events: (id, seq, prev_hash, hash)."""
    if not seals:
        return
    if conn.dialect.name == "postgresql":
        ids, seqs, prev_hashes, hashes = (list(column) for column in zip(*seals, strict=True))
        await conn.execute(
            _SEAL_PG, {"ids": ids, "seqs": seqs, "prev_hashes": prev_hashes, "hashes": hashes}
        )
        return
    params = [{"b_id": i, "b_seq": q, "b_prev": p, "b_hash": h} for i, q, p, h in seals]
    await conn.execute(_SEAL, params)


async def page(
    conn: AsyncConnection,
    *,
    partner_id: str | None,
    partner_like: Sequence[str] | None,
    include_unowned: bool,
    resource: str | None,
    action: str | None,
    start_time: datetime | None,
    end_time: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[Row]:
    """Events newest first: of one partner, or (``partner_id`` None) of the
    partners matching ``partner_like`` (every partner when None), plus events
    of no partner when ``include_unowned``."""
    conditions: list[ColumnElement[bool]] = []
    if partner_id is not None:
        conditions.append(t.c.partner_id == partner_id)
    elif partner_like is not None:
        owned = or_(*[t.c.partner_id.like(p, escape="\\") for p in partner_like])
        conditions.append(or_(owned, t.c.partner_id.is_(None)) if include_unowned else owned)
    elif not include_unowned:
        conditions.append(t.c.partner_id.is_not(None))
    if resource is not None:
        conditions.append(t.c.resource == resource)
    if action is not None:
        conditions.append(t.c.action == action)
    if start_time is not None:
        conditions.append(t.c.event_time >= start_time)
    if end_time is not None:
        conditions.append(t.c.event_time < end_time)
    if before_id is not None:
        conditions.append(t.c.id < before_id)
    query = select(*_COLUMNS).where(and_(True, *conditions)).order_by(t.c.id.desc()).limit(limit)
    return [dict(row._mapping) for row in await conn.execute(query)]


async def run(conn: AsyncConnection, after_seq: int, limit: int) -> list[Row]:
    """Sealed events in sequence order after ``after_seq`` (for verification)."""
    query = select(*_COLUMNS).where(t.c.seq > after_seq).order_by(t.c.seq).limit(limit)
    return [dict(row._mapping) for row in await conn.execute(query)]


async def count_unsealed(conn: AsyncConnection) -> int:
    """How many events wait to be sealed."""
    query = select(func.count()).select_from(t).where(t.c.seq.is_(None))
    return int(await conn.scalar(query) or 0)


async def latest(conn: AsyncConnection, limit: int) -> list[Row]:
    """The newest ``limit`` events, oldest first."""
    query = select(*_COLUMNS).order_by(t.c.id.desc()).limit(limit)
    return [dict(row._mapping) for row in reversed((await conn.execute(query)).all())]
