"""The signing-secret lifecycle: generation, activity and the refresh rules.

Pure: the current time is always passed in.
"""

from __future__ import annotations

import secrets as _csprng
import string
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from hookkeeper.service.domain.errors import FailedPrecondition

SECRET_LENGTH = 24
SECRET_ALPHABET = string.ascii_letters + string.digits
OVERLAP = timedelta(days=3)


def generate_secret() -> str:
    """24 characters from the operating system's CSPRNG (about 143 bits).

    One read of random bytes, then rejection sampling: bytes at or above the
    largest multiple of 62 are dropped so every character is equally likely
    (``secrets.choice`` per character costs a system call each).
    """
    limit = 256 - 256 % len(SECRET_ALPHABET)
    chars: list[str] = []
    while len(chars) < SECRET_LENGTH:
        chars += [
            SECRET_ALPHABET[b % len(SECRET_ALPHABET)] for b in _csprng.token_bytes(32) if b < limit
        ]
    return "".join(chars[:SECRET_LENGTH])


@dataclass(frozen=True)
class SecretPeriod:
    """When a stored secret may sign: from creation until the earlier of its
    expiry and its retirement (set when a refresh replaced it)."""

    secret_id: str
    create_time: datetime
    expire_time: datetime
    retire_time: datetime | None = None

    @property
    def end_time(self) -> datetime:
        """The moment the secret stops signing."""
        if self.retire_time is None:
            return self.expire_time
        return min(self.expire_time, self.retire_time)

    def is_active(self, now: datetime) -> bool:
        """Whether the secret signs at ``now``."""
        return self.create_time <= now < self.end_time


@dataclass(frozen=True)
class RefreshPlan:
    """What a refresh changes: the new secret's expiry and the retirements."""

    new_expire_time: datetime
    # The replaced (current) secret's end of activity, reported to the caller.
    previous_end_time: datetime
    # secret_id → retire_time for every secret that must stop signing.
    retirements: dict[str, datetime]


def newest_first(periods: list[SecretPeriod]) -> list[SecretPeriod]:
    """Secrets ordered newest first (creation time, then id for ties)."""
    return sorted(periods, key=lambda p: (p.create_time, p.secret_id), reverse=True)


def plan_refresh(
    periods: list[SecretPeriod], *, now: datetime, keep_existing: bool, validity: timedelta
) -> RefreshPlan:
    """Applies the refresh rules of the public API.

    With ``keep_existing`` the current secret stays active until
    ``min(now + 3 days, its expiry)`` and an expired current secret is refused;
    otherwise it ends now. Every older secret still active ends now, so at most
    two secrets are ever active.
    """
    ordered = newest_first(periods)
    current = ordered[0] if ordered else None
    retirements: dict[str, datetime] = {}
    if current is None:
        previous_end = now
    elif keep_existing:
        if not current.is_active(now):
            raise FailedPrecondition(
                "keep_existing_secret_active is not allowed: the existing secret has expired"
            )
        previous_end = min(now + OVERLAP, current.end_time)
        retirements[current.secret_id] = previous_end
    else:
        previous_end = min(now, current.end_time)
        retirements[current.secret_id] = previous_end
    for older in ordered[1:]:
        if older.end_time > now:
            retirements[older.secret_id] = now
    return RefreshPlan(now + validity, previous_end, retirements)


def active_newest_first(periods: list[SecretPeriod], now: datetime) -> list[SecretPeriod]:
    """The secrets that sign at ``now``, newest first (at most two)."""
    return [p for p in newest_first(periods) if p.is_active(now)]


def signing_window(
    periods: list[SecretPeriod], now: datetime
) -> tuple[list[SecretPeriod], datetime | None]:
    """``active_newest_first(periods, now)``, and the first moment after
    ``now`` at which any of ``periods`` starts or stops signing (None: none
    ever does): the answer holds for every moment from ``now`` until then."""
    changes = [t for p in periods for t in (p.create_time, p.end_time) if t > now]
    return active_newest_first(periods, now), min(changes, default=None)


def is_ended(period: SecretPeriod, now: datetime) -> bool:
    """Whether a secret will never sign again (safe to delete)."""
    return period.end_time <= now


def ended_after(periods: list[SecretPeriod], plan: RefreshPlan, now: datetime) -> list[str]:
    """Ids of the secrets that will never sign again once ``plan`` is applied."""
    return [
        p.secret_id
        for p in periods
        if is_ended(replace(p, retire_time=plan.retirements.get(p.secret_id, p.retire_time)), now)
    ]


def plan_revoke(periods: list[SecretPeriod], now: datetime) -> list[str]:
    """Ids of the secrets a revocation ends now: every active secret but the
    newest (the current one). FailedPrecondition, with nothing to change,
    when no previous secret is active."""
    active = active_newest_first(periods, now)
    if len(active) < 2:
        raise FailedPrecondition(
            "there is no previous secret to revoke: only the current secret is active"
        )
    return [p.secret_id for p in active[1:]]
