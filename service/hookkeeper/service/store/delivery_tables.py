"""Tables of notification delivery: events, subscriptions, the delivery queue
and the attempt log (migration 0003, its own branch off 0001).

The queue is a plain table: dispatchers claim due rows with
``SELECT ... FOR UPDATE SKIP LOCKED`` and a lease (see docs/delivery.md).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from hookkeeper.service.store.tables import UTCDateTime, metadata

notification_events = Table(
    "notification_events",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("partner_id", String(128), nullable=False),
    Column("event_type", String(64), nullable=False),
    # The publisher's id: unique per partner, which makes publishing idempotent.
    Column("event_id", String(128), nullable=False),
    # The normalized (compact) JSON object.
    Column("payload", Text, nullable=False),
    Column("is_test", Boolean, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    UniqueConstraint("partner_id", "event_id", name="uq_notification_events_partner_event"),
)

notification_subscriptions = Table(
    "notification_subscriptions",
    metadata,
    Column("partner_id", String(128), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column(
        "callback_config_id",
        String(36),
        # Deleting a configuration removes its subscriptions with it.
        ForeignKey(
            "callback_configs.id", ondelete="CASCADE", name="fk_notification_subscriptions_config"
        ),
        nullable=False,
        index=True,
    ),
    Column("create_time", UTCDateTime, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("partner_id", "event_type", name="pk_notification_subscriptions"),
)

notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("partner_id", String(128), nullable=False),
    # EVENT, TEST or CONNECTIVITY_CHECK.
    Column("kind", String(24), nullable=False),
    Column(
        "event_pk",
        String(36),
        ForeignKey(
            "notification_events.id", ondelete="CASCADE", name="fk_notification_deliveries_event"
        ),
        nullable=True,
    ),
    # No foreign key: the delivery and its attempts outlive a deleted
    # configuration (state CANCELLED) so the partner can still read the log.
    Column("callback_config_id", String(36), nullable=False),
    Column("transaction_id", String(36), nullable=False),
    # PENDING, DELIVERED, FAILED or CANCELLED.
    Column("state", String(16), nullable=False),
    Column("attempt_count", Integer, nullable=False),
    # Failed attempts in the current round (a redelivery starts a new round).
    Column("round_failures", Integer, nullable=False),
    Column("next_attempt_time", UTCDateTime, nullable=True),
    # The claim: which dispatcher holds the row, its fencing token, and until when.
    Column("lease_owner", String(64), nullable=True),
    Column("lease_token", String(36), nullable=True),
    Column("lease_expire_time", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("create_time", UTCDateTime, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
    Index(
        "ix_notification_deliveries_due",
        "next_attempt_time",
        postgresql_where=text("state = 'PENDING'"),
        sqlite_where=text("state = 'PENDING'"),
    ),
    Index("ix_notification_deliveries_config_state", "callback_config_id", "state"),
    Index("ix_notification_deliveries_event", "event_pk"),
)

notification_attempts = Table(
    "notification_attempts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "delivery_id",
        String(36),
        ForeignKey(
            "notification_deliveries.id",
            ondelete="CASCADE",
            name="fk_notification_attempts_delivery",
        ),
        nullable=False,
    ),
    Column("partner_id", String(128), nullable=False),
    Column("attempt_number", Integer, nullable=False),
    Column("start_time", UTCDateTime, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("http_status", Integer, nullable=False),
    Column("succeeded", Boolean, nullable=False),
    Column("error", Text, nullable=False),
    Column("dispatcher", String(64), nullable=False),
    Index("ix_notification_attempts_partner_time", "partner_id", "start_time", "id"),
    Index("ix_notification_attempts_delivery", "delivery_id", "attempt_number"),
)
