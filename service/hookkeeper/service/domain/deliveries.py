"""Deliveries in the domain: their states and kinds (stored as their names),
and the plain records of events, subscriptions, deliveries and attempts that
the store hands up and the API shows (no sealed values in them: those rows
are in ``store/records.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class DeliveryState(StrEnum):
    """Where a delivery stands. PENDING is the only state the dispatcher
    works on; DELIVERED, FAILED and CANCELLED are final until a redelivery
    starts a new round; PAUSED waits for its configuration to be enabled."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    # Its configuration is disabled: kept, not attempted, until it is enabled
    # (then PENDING again with a fresh retry schedule).
    PAUSED = "PAUSED"


class DeliveryKind(StrEnum):
    """Why a delivery exists: a published event, a partner's test send, or the
    connectivity check sent when a configuration is created."""

    EVENT = "EVENT"
    TEST = "TEST"
    CONNECTIVITY_CHECK = "CONNECTIVITY_CHECK"


@dataclass(frozen=True)
class EventRecord:
    """A notification_events row."""

    id: str
    partner_id: str
    event_type: str
    event_id: str
    payload: str
    is_test: bool
    create_time: datetime


@dataclass(frozen=True)
class SubscriptionRecord:
    """A notification_subscriptions row."""

    partner_id: str
    event_type: str
    callback_config_id: str
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True)
class DeliveryRecord:
    """A notification_deliveries row with its event's id and type."""

    id: str
    partner_id: str
    kind: str
    event_pk: str | None
    callback_config_id: str
    transaction_id: str
    state: str
    attempt_count: int
    round_failures: int
    next_attempt_time: datetime | None
    last_error: str | None
    create_time: datetime
    update_time: datetime
    event_id: str = ""
    event_type: str = ""


@dataclass(frozen=True)
class AttemptRecord:
    """A notification_attempts row with its delivery's context."""

    id: str
    delivery_id: str
    partner_id: str
    attempt_number: int
    start_time: datetime
    latency_ms: int
    http_status: int
    succeeded: bool
    error: str
    dispatcher: str
    kind: str = DeliveryKind.EVENT
    callback_config_id: str = ""
    transaction_id: str = ""
    event_id: str = ""
    event_type: str = ""
