"""The refresh rules of the public API, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hookkeeper.service.domain import secrets as lifecycle
from hookkeeper.service.domain.errors import FailedPrecondition
from hookkeeper.service.domain.secrets import SecretPeriod, plan_refresh

NOW = datetime(2026, 6, 1, tzinfo=UTC)
YEAR = timedelta(days=365)


def period(
    secret_id: str, created: datetime, expires: datetime, retired: datetime | None = None
) -> SecretPeriod:
    return SecretPeriod(secret_id, created, expires, retired)


def test_generated_secrets_are_24_chars_and_distinct() -> None:
    values = {lifecycle.generate_secret() for _ in range(200)}
    assert len(values) == 200
    assert all(len(s) == 24 and set(s) <= set(lifecycle.SECRET_ALPHABET) for s in values)


def test_keep_existing_overlaps_three_days() -> None:
    current = period("a", NOW - timedelta(days=100), NOW + timedelta(days=265))
    plan = plan_refresh([current], now=NOW, keep_existing=True, validity=YEAR)
    assert plan.previous_end_time == NOW + timedelta(days=3)
    assert plan.retirements == {"a": NOW + timedelta(days=3)}
    assert plan.new_expire_time == NOW + YEAR


def test_keep_existing_is_capped_at_the_old_expiry() -> None:
    current = period("a", NOW - YEAR, NOW + timedelta(hours=5))
    plan = plan_refresh([current], now=NOW, keep_existing=True, validity=YEAR)
    assert plan.previous_end_time == NOW + timedelta(hours=5)


def test_keep_existing_refused_for_an_expired_secret() -> None:
    expired = period("a", NOW - YEAR - timedelta(days=1), NOW - timedelta(days=1))
    with pytest.raises(FailedPrecondition):
        plan_refresh([expired], now=NOW, keep_existing=True, validity=YEAR)
    # Without keep it is allowed: that is how a partner recovers.
    plan = plan_refresh([expired], now=NOW, keep_existing=False, validity=YEAR)
    assert plan.new_expire_time == NOW + YEAR


def test_without_keep_the_old_secret_ends_now() -> None:
    current = period("a", NOW - timedelta(days=1), NOW + YEAR)
    plan = plan_refresh([current], now=NOW, keep_existing=False, validity=YEAR)
    assert plan.retirements == {"a": NOW}
    assert plan.previous_end_time == NOW


def test_refreshing_inside_an_overlap_never_leaves_three_active() -> None:
    oldest = period("a", NOW - timedelta(days=10), NOW + YEAR, NOW + timedelta(days=2))
    current = period("b", NOW - timedelta(days=1), NOW + YEAR)
    plan = plan_refresh([oldest, current], now=NOW, keep_existing=True, validity=YEAR)
    assert plan.retirements["a"] == NOW
    assert plan.retirements["b"] == NOW + timedelta(days=3)
    after = [
        SecretPeriod(p.secret_id, p.create_time, p.expire_time, plan.retirements.get(p.secret_id))
        for p in (oldest, current)
    ] + [period("c", NOW, plan.new_expire_time)]
    assert [p.secret_id for p in lifecycle.active_newest_first(after, NOW)] == ["c", "b"]
    assert lifecycle.ended_after([oldest, current], plan, NOW) == ["a"]


def test_active_secrets_are_newest_first_and_end_on_time() -> None:
    old = period("old", NOW - timedelta(days=2), NOW + YEAR, NOW + timedelta(days=1))
    new = period("new", NOW - timedelta(days=1), NOW + YEAR)
    assert [p.secret_id for p in lifecycle.active_newest_first([old, new], NOW)] == ["new", "old"]
    later = NOW + timedelta(days=1)
    assert [p.secret_id for p in lifecycle.active_newest_first([old, new], later)] == ["new"]
    assert lifecycle.active_newest_first([new], NOW + YEAR) == []


def test_generated_secret_characters_are_uniform() -> None:
    # 62 symbols, 24 per secret: a biased mapping of bytes (256 % 62 != 0)
    # would over-represent the first 8 symbols by about 25%.
    counts = dict.fromkeys(lifecycle.SECRET_ALPHABET, 0)
    for _ in range(4000):
        for char in lifecycle.generate_secret():
            counts[char] += 1
    expected = 4000 * 24 / 62
    first, rest = lifecycle.SECRET_ALPHABET[:8], lifecycle.SECRET_ALPHABET[8:]
    mean_first = sum(counts[c] for c in first) / len(first)
    mean_rest = sum(counts[c] for c in rest) / len(rest)
    assert abs(mean_first / mean_rest - 1) < 0.08
    assert all(abs(n - expected) < expected * 0.2 for n in counts.values())


def test_the_signing_window_holds_until_a_secret_starts_or_stops_signing() -> None:
    old = period("old", NOW - timedelta(days=2), NOW + YEAR, NOW + timedelta(days=1))
    new = period("new", NOW - timedelta(days=1), NOW + YEAR)
    active, until = lifecycle.signing_window([old, new], NOW)
    assert [p.secret_id for p in active] == ["new", "old"]
    assert until == NOW + timedelta(days=1)  # the old one's retirement
    active, until = lifecycle.signing_window([old, new], NOW + timedelta(days=1))
    assert [p.secret_id for p in active] == ["new"]
    assert until == NOW + YEAR
    # A secret not yet signing bounds the window by its creation.
    future = period("future", NOW + timedelta(hours=1), NOW + YEAR)
    assert lifecycle.signing_window([new, future], NOW)[1] == NOW + timedelta(hours=1)
    assert lifecycle.signing_window([new], NOW + YEAR) == ([], None)
