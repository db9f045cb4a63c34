"""What a delivery is in: its states and kinds (stored as their names)."""

from __future__ import annotations

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
