"""Tables of endpoint health (migration 0005, its own branch off 0001).

``endpoint_health`` holds one row per configuration that has been attempted:
the start of its current run of failures (auto-disable), the hold of a
``Retry-After`` answer, and the next free send slot of its
``max_deliveries_per_second``: the shared rate limiter, updated under a row
lock in the dispatchers' claim so it holds across processes.

``config_notices`` holds the e-mails telling a contact that its configuration
was disabled; one row per disablement, sent by the mailer exactly once.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text

from hookkeeper.service.store.tables import UTCDateTime, metadata

endpoint_health = Table(
    "endpoint_health",
    metadata,
    Column(
        "callback_config_id",
        String(36),
        ForeignKey("callback_configs.id", ondelete="CASCADE", name="fk_endpoint_health_config"),
        primary_key=True,
    ),
    # First failed attempt since the last success; NULL while it succeeds.
    Column("failing_since", UTCDateTime, nullable=True),
    # No attempt before this moment (a 429/503 Retry-After).
    Column("hold_until", UTCDateTime, nullable=True),
    # The next send slot not yet reserved (max_deliveries_per_second).
    Column("next_slot_time", UTCDateTime, nullable=True),
)

# Notice states (as in expiry_warnings).
NOTICE_PENDING = "pending"
NOTICE_SENT = "sent"

config_notices = Table(
    "config_notices",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "callback_config_id",
        String(36),
        ForeignKey("callback_configs.id", ondelete="CASCADE", name="fk_config_notices_config"),
        nullable=False,
    ),
    # DISABLED (the only kind so far).
    Column("kind", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_time", UTCDateTime, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    Column("sent_time", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ix_config_notices_due", "state", "next_attempt_time"),
    Index("ix_config_notices_config", "callback_config_id"),
)
