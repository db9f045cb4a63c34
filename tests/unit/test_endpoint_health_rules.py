"""Pure rules of issue 13: revocation, Standard Webhooks signatures,
Retry-After, the per-second slots and the auto-disable decision."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookkeeper.service.domain import endpoint_health as health
from hookkeeper.service.domain import standard_webhooks as swh
from hookkeeper.service.domain import throttling
from hookkeeper.service.domain.callback_config import check_scheme_unchanged
from hookkeeper.service.domain.errors import FailedPrecondition, InvalidArgument
from hookkeeper.service.domain.secrets import SecretPeriod, plan_revoke

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# --- revocation ------------------------------------------------------------


def test_revoke_ends_every_active_secret_but_the_newest() -> None:
    old = SecretPeriod(
        "old", NOW - timedelta(days=10), NOW + timedelta(days=300), NOW + timedelta(days=2)
    )
    new = SecretPeriod("new", NOW - timedelta(hours=1), NOW + timedelta(days=365))
    assert plan_revoke([new, old], NOW) == ["old"]


def test_revoke_without_an_overlap_is_refused() -> None:
    retired = SecretPeriod("old", NOW - timedelta(days=10), NOW + timedelta(days=300), NOW)
    current = SecretPeriod("new", NOW - timedelta(hours=1), NOW + timedelta(days=365))
    with pytest.raises(FailedPrecondition):
        plan_revoke([current, retired], NOW)
    with pytest.raises(FailedPrecondition):
        plan_revoke([current], NOW)


# --- Standard Webhooks -----------------------------------------------------


def test_secret_is_whsec_and_base64_of_32_random_bytes() -> None:
    first, second = swh.generate_secret(), swh.generate_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert swh.key_of(first) == base64.b64decode(first[6:])


def test_the_reference_library_verifies_each_signature_of_an_overlap() -> None:
    new, old = swh.generate_secret(), swh.generate_secret()
    body = b'{"eventId":"e-1","payload":{"x":"\xc3\xa9"}}'
    timestamp = swh.unix_seconds(datetime.now(UTC))
    header = swh.sign([new, old], "tx-1", timestamp, body)
    assert header.count("v1,") == 2 and " " in header
    headers = {"webhook-id": "tx-1", "webhook-timestamp": timestamp, "webhook-signature": header}
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers) == {"eventId": "e-1", "payload": {"x": "é"}}
    with pytest.raises(WebhookVerificationError):
        Webhook(swh.generate_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body, {**headers, "webhook-id": "tx-2"})


def test_our_verifier_matches_and_rejects_stale_or_foreign() -> None:
    secret = swh.generate_secret()
    timestamp = swh.unix_seconds(NOW)
    header = swh.sign([secret], "m", timestamp, b"{}")
    assert swh.verify(header, "m", timestamp, b"{}", [secret], now=NOW)
    assert not swh.verify(header, "m", timestamp, b"{} ", [secret], now=NOW)
    assert not swh.verify(header, "m", timestamp, b"{}", [secret], now=NOW + timedelta(minutes=6))
    assert not swh.verify(header, "m", timestamp, b"{}", [swh.generate_secret()], now=NOW)


def test_a_non_whsec_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        swh.key_of("abcdefghijklmnopqrstuvwx")


def test_the_scheme_cannot_change_after_create() -> None:
    check_scheme_unchanged("EXPEDIA_V2", None, "callback_config.signature_scheme")
    check_scheme_unchanged("EXPEDIA_V2", "EXPEDIA_V2", "callback_config.signature_scheme")
    with pytest.raises(InvalidArgument) as caught:
        check_scheme_unchanged(
            "EXPEDIA_V2", "STANDARD_WEBHOOKS", "callback_config.signature_scheme"
        )
    assert caught.value.violations[0].field == "callback_config.signature_scheme"


# --- Retry-After -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", NOW + timedelta(seconds=120)),
        (" 5 ", NOW + timedelta(seconds=5)),
        ("0", NOW),
        ("86400", NOW + timedelta(hours=1)),
        ("9" * 40, NOW + timedelta(hours=1)),
        ("Sun, 01 Mar 2026 12:10:00 GMT", NOW + timedelta(minutes=10)),
        ("Sun, 01 Mar 2026 18:00:00 GMT", NOW + timedelta(hours=1)),
        ("Sun, 01 Mar 2026 11:00:00 GMT", NOW),
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_or_http_date_capped_at_one_hour(
    value: str | None, expected: datetime | None
) -> None:
    assert throttling.parse_retry_after(value, NOW) == expected


def test_only_429_and_503_hold_and_only_into_the_future() -> None:
    assert throttling.hold_until(429, "30", NOW) == NOW + timedelta(seconds=30)
    assert throttling.hold_until(503, "30", NOW) == NOW + timedelta(seconds=30)
    assert throttling.hold_until(500, "30", NOW) is None
    assert throttling.hold_until(429, "0", NOW) is None
    assert throttling.hold_until(429, None, NOW) is None


# --- per-second slots ------------------------------------------------------


def test_slots_are_spaced_and_never_saved_up() -> None:
    plan = throttling.plan_slots(
        None, now=NOW, rate=10, count=8, horizon=timedelta(milliseconds=500)
    )
    assert plan.taken == [NOW + timedelta(milliseconds=100 * i) for i in range(6)]
    assert plan.deferred == [NOW + timedelta(milliseconds=600 + 100 * i) for i in range(2)]
    assert plan.next_slot == NOW + timedelta(milliseconds=600)
    # A slot long past is not credit: sending restarts from now.
    later = throttling.plan_slots(
        NOW - timedelta(hours=1), now=NOW, rate=10, count=1, horizon=timedelta(0)
    )
    assert later.taken == [NOW]


def test_a_busy_configuration_takes_nothing_beyond_the_horizon() -> None:
    plan = throttling.plan_slots(
        NOW + timedelta(seconds=5), now=NOW, rate=2, count=3, horizon=timedelta(seconds=1)
    )
    assert plan.taken == []
    assert plan.deferred == [NOW + timedelta(seconds=s) for s in (5, 5.5, 6)]


def test_any_window_holds_at_most_rate_times_length_plus_one() -> None:
    rate, slots, next_slot = 7, [], None
    now = NOW
    for _ in range(200):  # many claims, 50 ms apart
        plan = throttling.plan_slots(
            next_slot, now=now, rate=rate, count=5, horizon=timedelta(milliseconds=500)
        )
        slots += plan.taken
        next_slot = plan.next_slot
        now += timedelta(milliseconds=50)
    window = timedelta(seconds=3)
    worst = max(sum(1 for s in slots if start <= s < start + window) for start in slots)
    assert worst <= rate * 3 + 1


# --- auto-disable ----------------------------------------------------------


def test_failure_run_starts_at_the_first_failure_and_ends_at_a_success() -> None:
    t1, t2 = NOW, NOW + timedelta(hours=1)
    since = health.failing_since_after(None, succeeded=False, attempt_time=t1)
    assert since == t1
    assert health.failing_since_after(since, succeeded=False, attempt_time=t2) == t1
    assert health.failing_since_after(since, succeeded=True, attempt_time=t2) is None


def test_disable_decision() -> None:
    after = timedelta(hours=120)
    assert health.should_disable(http_status=410, failing_since=None, now=NOW, after=after)
    assert (
        health.should_disable(
            http_status=500, failing_since=NOW - timedelta(hours=119), now=NOW, after=after
        )
        is None
    )
    reason = health.should_disable(
        http_status=500, failing_since=NOW - timedelta(hours=120), now=NOW, after=after
    )
    assert reason is not None and "120 hours" in reason
    assert health.should_disable(http_status=200, failing_since=None, now=NOW, after=after) is None


def test_state_transitions_happen_once() -> None:
    first = health.disable(health.ACTIVE, "why", NOW)
    assert first == health.Transition(health.DISABLED, "why", NOW)
    assert health.disable(health.DISABLED, "again", NOW) is None
    assert health.enable(health.DISABLED) == health.Transition(health.ACTIVE, None, None)
    assert health.enable(health.ACTIVE) is None


# --- the receiver helper ---------------------------------------------------


def test_the_receiver_helper_verifies_standard_webhooks_too() -> None:
    from hookkeeper.service.receiver import SignatureError, verify_notification

    new, old = swh.generate_secret(), swh.generate_secret()
    body = b'{"eventId":"e1"}'
    timestamp = swh.unix_seconds(NOW)
    headers = {
        "Webhook-Id": "tx-9",
        "Webhook-Timestamp": timestamp,
        "Webhook-Signature": swh.sign([new, old], "tx-9", timestamp, body),
    }
    assert verify_notification(headers, body, [old], now=NOW)["eventId"] == "e1"
    assert verify_notification(headers, body, [new, old], now=NOW)["eventId"] == "e1"
    with pytest.raises(SignatureError):
        verify_notification(headers, body, [swh.generate_secret()], now=NOW)
    with pytest.raises(SignatureError):
        verify_notification({**headers, "Webhook-Id": "tx-8"}, body, [new], now=NOW)
    with pytest.raises(SignatureError):
        verify_notification(headers, body, [new], now=NOW + timedelta(minutes=6))
    with pytest.raises(SignatureError):
        verify_notification(headers, body, ["not-a-whsec-secret"], now=NOW)
