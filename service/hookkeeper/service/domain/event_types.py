"""The catalogue of notification event types and their retry policies.

The documented policies (see docs/delivery.md): review events are retried every
25 seconds up to 50 times; message events every hour for one day; property
events every hour for seven days. Where the reference marks a policy
*unconfirmed* we follow its advice (treat like the family it belongs to).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from hookkeeper.service.domain.errors import invalid


@dataclass(frozen=True)
class RetryPolicy:
    """A fixed interval between attempts and how many retries follow the first."""

    interval: timedelta
    max_retries: int

    def describe(self) -> str:
        """Human-readable form, e.g. ``every 25s, up to 50 retries``."""
        return f"every {int(self.interval.total_seconds())}s, up to {self.max_retries} retries"


@dataclass(frozen=True)
class EventType:
    """One event type partners can subscribe to."""

    name: str
    description: str
    retry_policy: RetryPolicy
    # Documented as mandatory to subscribe (informational: we do not enforce it).
    mandatory: bool = False


REVIEWS = RetryPolicy(timedelta(seconds=25), 50)
MESSAGES = RetryPolicy(timedelta(hours=1), 24)
PROPERTIES = RetryPolicy(timedelta(hours=1), 24 * 7)
# A connectivity check is a single GET: recorded, never retried.
CONNECTIVITY = RetryPolicy(timedelta(0), 0)

CATALOGUE: tuple[EventType, ...] = (
    EventType("GuestReviewSubmitted", "A traveler left a review.", REVIEWS),
    EventType("ReviewsApproved", "Reviews were approved by moderation.", REVIEWS),
    EventType(
        "ReviewsManagementResponseApproved",
        "A management response to a review was approved.",
        REVIEWS,
    ),
    EventType(
        "ReviewsManagementResponseRejected",
        "A management response to a review was rejected.",
        REVIEWS,
    ),
    EventType(
        "MessageThreadCreated",
        "A message thread was created with a reservation.",
        MESSAGES,
        mandatory=True,
    ),
    EventType("MessageReceived", "A traveler or partner sent a message.", MESSAGES),
    EventType("MessageAttributesUpdated", "A message's moderation status changed.", MESSAGES),
    EventType("PropertyStatusChanged", "A property became active or inactive.", PROPERTIES),
    EventType(
        "PropertyStatusMinRequirementMissing",
        "A property was created with only the minimum information.",
        PROPERTIES,
    ),
)

_BY_NAME = {t.name: t for t in CATALOGUE}


def get(name: str, field: str = "event_type") -> EventType:
    """The event type called ``name``; INVALID_ARGUMENT naming ``field`` otherwise."""
    if not name:
        raise invalid(field, "is required")
    found = _BY_NAME.get(name)
    if found is None:
        raise invalid(field, f"unknown event type {name[:64]!r}; see ListEventTypes")
    return found


def find(name: str) -> EventType | None:
    """The event type called ``name``, or None."""
    return _BY_NAME.get(name)


def is_known(name: str) -> bool:
    """Whether ``name`` is in the catalogue."""
    return name in _BY_NAME
