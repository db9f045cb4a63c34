"""When the next attempt of a failed delivery happens, if ever.

Pure: the failure count, the policy, the scale and the time are passed in.
``HOOKKEEPER_RETRY_INTERVAL_SCALE`` multiplies every interval so tests and
staging can run the documented policies fast.
"""

from __future__ import annotations

from datetime import datetime

from hookkeeper.service.domain.event_types import RetryPolicy


def next_attempt_time(
    policy: RetryPolicy, failures: int, now: datetime, *, scale: float
) -> datetime | None:
    """The time of the next attempt after ``failures`` failed attempts in the
    current round (the first attempt is not a retry), or None when the policy
    is exhausted and the delivery has failed for good."""
    if failures < 1:
        raise ValueError("failures counts failed attempts and starts at 1")
    if scale < 0:
        raise ValueError("scale must not be negative")
    if failures > policy.max_retries:
        return None
    return now + policy.interval * scale


def schedule(policy: RetryPolicy, start: datetime, *, scale: float) -> list[datetime]:
    """Every planned attempt time of a delivery that always fails (for docs and tests)."""
    times = [start]
    failures = 1
    while (following := next_attempt_time(policy, failures, times[-1], scale=scale)) is not None:
        times.append(following)
        failures += 1
    return times
