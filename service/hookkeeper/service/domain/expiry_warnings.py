"""When to warn a configuration's contact that its current secret expires.

Pure: the current time is always passed in. Warnings go 30, 7 and 1 days
before the expiry of the configuration's *current* secret. After downtime only
the nearest threshold that applies is sent, never the stale ones before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# Days before expiry, farthest first.
THRESHOLD_DAYS: tuple[int, ...] = (30, 7, 1)
# How far ahead the mailer must look for secrets that may be due.
HORIZON = timedelta(days=max(THRESHOLD_DAYS))


def due_threshold(create_time: datetime, expire_time: datetime, now: datetime) -> int | None:
    """The threshold (in days) whose warning is due for a secret at ``now``, or None.

    A threshold applies once its moment (``expire_time - days``) has come and
    the secret has not expired yet. When several apply (the mailer was down,
    or it polls rarely), only the nearest one — the fewest days — is due: a
    partner told "7 days left" does not also need the outdated "30 days left".
    A threshold whose moment lies before the secret was created never applies,
    so a secret issued with a short validity is not greeted with a warning for
    a moment it never lived through.
    """
    if now >= expire_time:
        return None
    due = None
    for days in THRESHOLD_DAYS:
        moment = expire_time - timedelta(days=days)
        if create_time <= moment <= now:
            due = days
    return due


@dataclass(frozen=True)
class Backoff:
    """Retry delays for a failed send: exponential, capped; never gives up."""

    base: timedelta
    cap: timedelta

    def delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt (1 for the first)."""
        exponent = max(0, attempts - 1)
        # Bound the exponent so the multiplication never overflows timedelta.
        factor = 2 ** min(exponent, 32)
        delay: timedelta = min(self.base * factor, self.cap)
        return delay


def days_left_text(days: int) -> str:
    """``"1 day"`` or ``"N days"``."""
    return "1 day" if days == 1 else f"{days} days"
