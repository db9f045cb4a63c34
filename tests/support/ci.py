"""Whether the run is CI's: there, a missing dependency (PostgreSQL, Redis, a
browser) fails the test instead of skipping it."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str, what: str) -> None:
    """Skips with ``reason`` outside CI; fails under CI, where ``what`` is required."""
    if IN_CI:
        pytest.fail(f"CI requires {what}: {reason}")
    pytest.skip(reason)
