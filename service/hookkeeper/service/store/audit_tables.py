"""The audit trail's table: events appended with their changes, then sealed
into a hash chain (service/domain/audit.py)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text, text

from hookkeeper.service.store.tables import UTCDateTime, metadata

audit_events = Table(
    "audit_events",
    metadata,
    # Storage order, assigned on insert (it names the event).
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    # Assigned by the sealer under a lock: 1, 2, 3 … without gaps; NULL until sealed.
    Column("seq", BigInteger, nullable=True, unique=True),
    Column("event_time", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("resource", Text, nullable=False),
    # The partner the event concerns; NULL for events of no partner.
    Column("partner_id", String(128), nullable=True),
    Column("outcome", String(32), nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("count", Integer, nullable=False),
    Column("prev_hash", String(64), nullable=True),
    Column("hash", String(64), nullable=True),
    Index("ix_audit_events_partner_id", "partner_id", "id"),
    Index("ix_audit_events_resource_id", "resource", "id"),
    Index(
        "ix_audit_events_unsealed",
        "id",
        sqlite_where=text("seq IS NULL"),
        postgresql_where=text("seq IS NULL"),
    ),
)
