"""Whether a callback configuration receives notifications, and when that
changes: pure rules, the current time always passed in.

A configuration is ACTIVE or DISABLED. It is disabled by request, at once by
an HTTP 410 Gone answer, or when every attempt to it has failed for the
operator's ``disable_after`` (HOOKKEEPER_DISABLE_AFTER_HOURS). Disabled, it
gets no attempts; its deliveries wait, paused, until it is enabled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

ACTIVE = "ACTIVE"
DISABLED = "DISABLED"
GONE_STATUS = 410
MANUAL_REASON = "disabled by request (DisableCallbackConfig)"


def gone_reason() -> str:
    """Why a 410 answer disabled the configuration."""
    return "the callback URL answered HTTP 410 Gone"


def failing_reason(failing_since: datetime, after: timedelta) -> str:
    """Why sustained failure disabled the configuration."""
    hours = after.total_seconds() / 3600
    return (
        f"every delivery attempt failed for {hours:g} hours "
        f"(since {failing_since.isoformat(timespec='seconds')})"
    )


@dataclass(frozen=True)
class Transition:
    """A change of state: the new state, and the reason and time it records."""

    state: str
    reason: str | None
    time: datetime | None


def disable(state: str, reason: str, now: datetime) -> Transition | None:
    """The transition to DISABLED, or None when already disabled (a repeat
    changes nothing, so the partner is told once)."""
    if state == DISABLED:
        return None
    return Transition(DISABLED, reason, now)


def enable(state: str) -> Transition | None:
    """The transition to ACTIVE, or None when already active."""
    if state == ACTIVE:
        return None
    return Transition(ACTIVE, None, None)


def failing_since_after(
    failing_since: datetime | None, *, succeeded: bool, attempt_time: datetime
) -> datetime | None:
    """The start of the current run of failures after one more attempt: a
    success ends the run, the first failure starts it."""
    if succeeded:
        return None
    if failing_since is None:
        return attempt_time
    return min(failing_since, attempt_time)


def should_disable(
    *, http_status: int, failing_since: datetime | None, now: datetime, after: timedelta
) -> str | None:
    """Why an attempt's outcome disables the configuration, or None: a 410
    at once, otherwise failures only for at least ``after``."""
    if http_status == GONE_STATUS:
        return gone_reason()
    if failing_since is not None and now - failing_since >= after:
        return failing_reason(failing_since, after)
    return None
