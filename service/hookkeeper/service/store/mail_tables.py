"""Tables of the expiry-warning mailer, on the shared metadata.

``expiry_warnings`` holds one row per (secret, threshold): the unique
constraint is what makes each warning go exactly once, however many mailers
run. Rows disappear with their secret (a refresh deletes retired secrets, a
deleted configuration takes its secrets along).
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from hookkeeper.service.store.tables import UTCDateTime, callback_configs, metadata

# States of a warning row.
PENDING = "pending"
SENT = "sent"
# A nearer threshold of the same secret became due before this one went out.
SUPERSEDED = "superseded"
# The secret stopped being current (refreshed) or expired before sending.
CANCELLED = "cancelled"

expiry_warnings = Table(
    "expiry_warnings",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "secret_id",
        String(36),
        ForeignKey("callback_secrets.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "callback_config_id",
        String(36),
        ForeignKey("callback_configs.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    # Days before expiry: 30, 7 or 1.
    Column("threshold_days", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    # When a pending row may next be claimed; a claim pushes it out by the
    # lease, so a mailer that dies mid-send is retried by another.
    Column("next_attempt_time", UTCDateTime, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    Column("sent_time", UTCDateTime, nullable=True),
    # The last SMTP failure, for operators (never contains credentials).
    Column("last_error", Text, nullable=True),
    UniqueConstraint("secret_id", "threshold_days", name="uq_expiry_warnings_secret_threshold"),
    Index("ix_expiry_warnings_due", "state", "next_attempt_time"),
)

# The mailer's scan finds configurations by their current secret's expiry.
ix_callback_configs_secret_expire_time = Index(
    "ix_callback_configs_secret_expire_time", callback_configs.c.secret_expire_time
)
