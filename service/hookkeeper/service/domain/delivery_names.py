"""Resource names of notification delivery:
``partners/{partner}/subscriptions/{event_type}``,
``partners/{partner}/deliveries/{delivery}`` (``-`` for every delivery in a
List parent) and ``partners/{partner}/deliveries/{delivery}/attempts/{n}``."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from hookkeeper.service.domain.errors import invalid
from hookkeeper.service.domain.names import _PARTNER_ID

_SUBSCRIPTION = re.compile(
    rf"partners/(?P<partner>{_PARTNER_ID.pattern})/subscriptions/(?P<t>[A-Za-z0-9_.-]{{1,64}})"
)
_DELIVERY = re.compile(rf"partners/(?P<partner>{_PARTNER_ID.pattern})/deliveries/(?P<d>[^/]+)")


@dataclass(frozen=True)
class SubscriptionName:
    """A parsed subscription name: the partner and the event type."""

    partner_id: str
    event_type: str

    def __str__(self) -> str:
        return f"partners/{self.partner_id}/subscriptions/{self.event_type}"


@dataclass(frozen=True)
class DeliveryName:
    """A parsed delivery name; ``delivery_id`` None means every delivery (``-``)."""

    partner_id: str
    delivery_id: str | None

    def __str__(self) -> str:
        return f"partners/{self.partner_id}/deliveries/{self.delivery_id or '-'}"


def delivery_name(partner_id: str, delivery_id: str) -> str:
    """The resource name of a delivery."""
    return f"partners/{partner_id}/deliveries/{delivery_id}"


def attempt_name(partner_id: str, delivery_id: str, number: int) -> str:
    """The resource name of a delivery attempt."""
    return f"{delivery_name(partner_id, delivery_id)}/attempts/{number}"


def parse_subscription(value: str, field: str = "name") -> SubscriptionName:
    """Parses ``partners/{partner}/subscriptions/{event_type}``."""
    match = _SUBSCRIPTION.fullmatch(value)
    if not match:
        raise invalid(field, "must be of the form partners/{partner}/subscriptions/{event_type}")
    return SubscriptionName(match["partner"], match["t"])


def parse_delivery(
    value: str, field: str = "name", *, allow_wildcard: bool = False
) -> DeliveryName:
    """Parses ``partners/{partner}/deliveries/{delivery}`` (a UUID, or ``-``
    where ``allow_wildcard``)."""
    match = _DELIVERY.fullmatch(value)
    if not match:
        raise invalid(field, "must be of the form partners/{partner}/deliveries/{delivery}")
    if match["d"] == "-" and allow_wildcard:
        return DeliveryName(match["partner"], None)
    try:
        return DeliveryName(match["partner"], str(uuid.UUID(match["d"])))
    except ValueError:
        raise invalid(field, "the delivery id must be a UUID") from None
