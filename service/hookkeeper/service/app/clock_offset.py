"""A shifted process clock for end-to-end tests (never for production).

Process-level tests need a real ``hookkeeper serve`` or ``hookkeeper mailer``
to live a year in a second. ``HOOKKEEPER_UNSAFE_CLOCK_OFFSET_SECONDS`` shifts
the clock the use cases and workers read, but only when
``HOOKKEEPER_UNSAFE_TEST_CLOCK`` holds the exact phrase below: one stray
variable cannot turn it on, and either variable alone makes the process
refuse to start rather than run with a surprise. Every start with the offset
logs a warning.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from hookkeeper.service.app.context import Clock, system_clock
from hookkeeper.service.settings import Settings

CONFIRMATION = "i-know-this-is-not-production"

_log = logging.getLogger(__name__)


class ClockOffsetError(ValueError):
    """The two test-clock settings disagree."""


def clock_from_settings(settings: Settings) -> Clock:
    """The system clock, or (tests only) the system clock shifted by the offset."""
    offset = settings.unsafe_clock_offset_seconds
    confirmed = settings.unsafe_test_clock == CONFIRMATION
    if settings.unsafe_test_clock and not confirmed:
        raise ClockOffsetError(
            f"HOOKKEEPER_UNSAFE_TEST_CLOCK must be exactly {CONFIRMATION!r} or unset"
        )
    if offset == 0 and not confirmed:
        return system_clock
    if not confirmed:
        raise ClockOffsetError(
            "HOOKKEEPER_UNSAFE_CLOCK_OFFSET_SECONDS is a test-only setting; it needs "
            f"HOOKKEEPER_UNSAFE_TEST_CLOCK={CONFIRMATION}"
        )
    shift = timedelta(seconds=offset)
    _log.warning("TEST CLOCK: the process clock runs %s ahead of the real one", shift)

    def shifted() -> datetime:
        return system_clock() + shift

    return shifted
