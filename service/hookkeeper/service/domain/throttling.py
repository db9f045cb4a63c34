"""Throttling of deliveries to one configuration, pure.

Two rules: a 429 or 503 answer with ``Retry-After`` (delta-seconds or an
HTTP date, RFC 9110 §10.2.3) holds the configuration's next attempt until
then, capped at one hour; and ``max_deliveries_per_second`` spaces the sends
at least ``1/rate`` apart, across every dispatcher (the slots are reserved in
the database; see store/endpoint_health.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

THROTTLE_STATUSES = frozenset({429, 503})
RETRY_AFTER_CAP = timedelta(hours=1)
MAX_RATE = 10_000


def parse_retry_after(
    value: str | None, now: datetime, *, cap: timedelta = RETRY_AFTER_CAP
) -> datetime | None:
    """The moment a ``Retry-After`` value names, no later than ``now + cap``;
    None when absent or unreadable (the retry policy alone applies then)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        # Huge values are capped before building a timedelta (which overflows).
        seconds = min(int(text), int(cap.total_seconds()))
        return now + timedelta(seconds=seconds)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # HTTP dates are GMT by definition
    return min(max(moment, now), now + cap)


def hold_until(http_status: int, retry_after: str | None, now: datetime) -> datetime | None:
    """Until when a throttling answer holds the configuration, or None."""
    if http_status not in THROTTLE_STATUSES:
        return None
    until = parse_retry_after(retry_after, now)
    return until if until is not None and until > now else None


@dataclass(frozen=True)
class SlotPlan:
    """Send times for a configuration's due deliveries under its rate."""

    # Send times of the deliveries taken now (within the horizon), in order.
    taken: list[datetime]
    # Due times of the rest, pushed to when their slots would come, so they
    # leave the head of the queue and never hold up other configurations.
    deferred: list[datetime]
    # The configuration's next free slot after those taken.
    next_slot: datetime


def plan_slots(
    next_slot: datetime | None,
    *,
    now: datetime,
    rate: int,
    count: int,
    horizon: timedelta,
) -> SlotPlan:
    """Reserves slots ``1/rate`` apart from ``max(next_slot, now)`` for up to
    ``count`` deliveries, taking those whose slot falls within ``horizon``.
    Unused capacity is never saved up: at most ``rate * T + 1`` sends fall in
    any window of ``T`` seconds."""
    gap = timedelta(seconds=1) / rate
    slot = now if next_slot is None or next_slot < now else next_slot
    taken: list[datetime] = []
    while len(taken) < count and slot <= now + horizon:
        taken.append(slot)
        slot += gap
    deferred = [slot + gap * i for i in range(count - len(taken))]
    return SlotPlan(taken, deferred, slot)
