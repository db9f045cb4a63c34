"""The audit trail's table: hash-chained events, appended only."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from hookkeeper.service.store.tables import UTCDateTime, metadata

audit_events = Table(
    "audit_events",
    metadata,
    # Assigned by the appender under a lock: 1, 2, 3 … without gaps.
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("event_time", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("resource", Text, nullable=False),
    # The partner the event concerns; NULL for events of no partner.
    Column("partner_id", String(128), nullable=True),
    Column("outcome", String(32), nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("count", Integer, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_events_partner_seq", "partner_id", "seq"),
    Index("ix_audit_events_resource_seq", "resource", "seq"),
)
