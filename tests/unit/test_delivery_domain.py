"""Pure delivery rules: event types, retry schedules, the envelope, the SSRF
address rule, the receiver helper. No database, no network."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookkeeper.service.delivery.http import ForbiddenAddress, refusal
from hookkeeper.service.delivery.pool import Pool
from hookkeeper.service.delivery.target import target_of
from hookkeeper.service.domain import envelope, event_types, retry
from hookkeeper.service.domain.addresses import forbidden_reason
from hookkeeper.service.domain.delivery_names import parse_delivery, parse_subscription
from hookkeeper.service.domain.errors import InvalidArgument
from hookkeeper.service.domain.ids import (
    Uuid7Source,
    unix_millis,
    uuid4_string,
    uuid4_strings,
    uuid7_prefix,
    uuid7_string,
    uuid7_strings,
)
from hookkeeper.service.receiver import SignatureError, verify_notification

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def test_catalogue_has_the_documented_policies() -> None:
    review = event_types.get("GuestReviewSubmitted").retry_policy
    assert (review.interval, review.max_retries) == (timedelta(seconds=25), 50)
    message = event_types.get("MessageReceived").retry_policy
    assert message.interval * message.max_retries == timedelta(days=1)
    prop = event_types.get("PropertyStatusChanged").retry_policy
    assert prop.interval * prop.max_retries == timedelta(days=7)
    assert event_types.get("MessageThreadCreated").mandatory
    assert len({t.name for t in event_types.CATALOGUE}) == 9


def test_unknown_event_type_names_the_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        event_types.get("Nope", "subscription.event_type")
    assert caught.value.violations[0].field == "subscription.event_type"


def test_retry_schedule_scaled_and_exhausted() -> None:
    policy = event_types.REVIEWS
    times = retry.schedule(policy, T0, scale=1.0)
    assert len(times) == 51  # the first attempt and 50 retries
    assert times[1] - times[0] == timedelta(seconds=25)
    fast = retry.schedule(policy, T0, scale=0.01)
    assert fast[1] - fast[0] == timedelta(seconds=0.25)
    assert retry.next_attempt_time(policy, 50, T0, scale=1.0) == T0 + timedelta(seconds=25)
    assert retry.next_attempt_time(policy, 51, T0, scale=1.0) is None
    assert retry.next_attempt_time(event_types.CONNECTIVITY, 1, T0, scale=1.0) is None


def test_envelope_is_compact_ordered_and_carries_the_payload_verbatim() -> None:
    payload = envelope.normalize_payload('{ "b": 1, "a": "é" }')
    body = envelope.build(
        event_id="e1",
        event_type="GuestReviewSubmitted",
        event_time=T0,
        partner_id="p1",
        payload_json=payload,
    )
    assert body.decode() == (
        '{"eventId":"e1","eventType":"GuestReviewSubmitted",'
        '"eventTime":"2026-01-15T12:00:00.000Z","partnerId":"p1","test":false,'
        '"payload":{"b":1,"a":"é"}}'
    )
    assert json.loads(body)["payload"] == {"b": 1, "a": "é"}


@pytest.mark.parametrize("bad", ["", "[1]", "{", '"x"', "x" * (300 * 1024)])
def test_payload_must_be_a_json_object(bad: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        envelope.normalize_payload(bad)
    assert caught.value.violations[0].field == "payload_json"


def test_event_id_rules() -> None:
    assert envelope.check_event_id("ok-1") is None
    assert envelope.check_event_id("") is not None
    assert envelope.check_event_id("x" * 129) is not None
    assert envelope.check_event_id("a\nb") is not None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.100.100.200",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "fd00:ec2::254",
        "224.0.0.1",
    ],
)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert forbidden_reason(address) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(address) is None


def test_refusal_before_dns() -> None:
    assert refusal("https://127.0.0.1/x", allow_insecure=False) is not None
    assert refusal("http://example.com/x", allow_insecure=False) is not None
    assert refusal("https://[::1]:8443/", allow_insecure=False) is not None
    assert refusal("https://example.com/x", allow_insecure=False) is None
    assert refusal("http://127.0.0.1/x", allow_insecure=True) is None


def test_resource_names() -> None:
    name = parse_subscription("partners/p1/subscriptions/GuestReviewSubmitted")
    assert (name.partner_id, name.event_type) == ("p1", "GuestReviewSubmitted")
    assert parse_delivery("partners/p1/deliveries/-", allow_wildcard=True).delivery_id is None
    with pytest.raises(InvalidArgument):
        parse_delivery("partners/p1/deliveries/-")
    with pytest.raises(InvalidArgument):
        parse_delivery("partners/p1/deliveries/not-a-uuid")


def _independent_signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def test_receiver_helper_accepts_either_secret_and_rejects_stale() -> None:
    body = b'{"eventId":"e1","payload":{}}'
    ts = str(int(T0.timestamp() * 1000))
    header = "sha256=" + ",".join(
        _independent_signature(s, ts, body) for s in ("new-secret", "old-secret")
    )
    headers = {"X-EG-Notification-Signature-V2": header, "x-eg-notification-timestamp": ts}
    assert verify_notification(headers, body, ["old-secret"], now=T0)["eventId"] == "e1"
    assert verify_notification(headers, body, ["new-secret", "x"], now=T0)["eventId"] == "e1"
    with pytest.raises(SignatureError, match="no signature"):
        verify_notification(headers, body, ["wrong"], now=T0)
    with pytest.raises(SignatureError, match="tolerance"):
        verify_notification(headers, body, ["new-secret"], now=T0 + timedelta(minutes=6))
    with pytest.raises(SignatureError, match="no signature"):
        verify_notification(headers, body + b" ", ["new-secret"], now=T0)
    with pytest.raises(SignatureError, match="missing"):
        verify_notification({}, body, ["new-secret"], now=T0)


def _pool_resolving_to(addresses: list[str]) -> Pool:
    """A guarded pool whose DNS answer (under test) is ``addresses``."""

    async def resolve(host: str, port: int) -> list[str]:
        return addresses

    return Pool(limit=1, guarded=True, max_body=1, resolve=resolve)


async def test_the_guard_keeps_only_public_addresses() -> None:
    mixed = _pool_resolving_to(["10.0.0.5", "93.184.215.14"])
    assert await mixed.addresses(target_of("https://example.com/")) == ["93.184.215.14"]
    inward = _pool_resolving_to(["127.0.0.1", "169.254.169.254", "fe80::1%eth0"])
    with pytest.raises(ForbiddenAddress, match="loopback") as refused:
        await inward.addresses(target_of("https://rebound.example.com/"))
    assert "link-local" in str(refused.value)
    # The real resolver: localhost is loopback whichever addresses it has.
    real = Pool(limit=1, guarded=True, max_body=1)
    with pytest.raises(ForbiddenAddress, match="callback host localhost resolves to"):
        await real.addresses(target_of("https://localhost:8443/"))


def test_attempt_errors_never_show_url_credentials() -> None:
    from hookkeeper.service.delivery.http import scrub_url

    url = "https://user:pa55word@hooks.example.com:8443/in?token=s3cr3t#frag"
    text = scrub_url(f"ClientOSError: cannot reach {url} (reset)", url)
    assert "pa55word" not in text
    assert "s3cr3t" not in text
    assert "https://hooks.example.com:8443/in" in text
    # aiohttp renders URLs through yarl, which normalises them (host case).
    import yarl

    mixed = "https://user:pa55word@Hooks.Example.COM/in?token=s3cr3t"
    rendered = str(yarl.URL(mixed))
    assert rendered != mixed
    scrubbed = scrub_url(f"InvalidURL {rendered}", mixed)
    assert "s3cr3t" not in scrubbed
    assert "pa55word" not in scrubbed


def test_bulk_ids_are_canonical_distinct_version_4_uuids() -> None:
    ids = uuid4_strings(5000)
    assert len(set(ids)) == 5000
    for text in [*ids, uuid4_string()]:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
    # The variant digit takes all four values (its low bits stay random).
    assert {text[19] for text in ids} == set("89ab")
    assert uuid4_strings(0) == []


def test_time_ordered_ids_are_canonical_distinct_version_7_uuids_of_their_millisecond() -> None:
    moment = datetime(2026, 12, 2, 15, 30, 1, 234_567, tzinfo=UTC)
    millis = unix_millis(moment)
    assert millis == 1_796_225_401_234
    ids = uuid7_strings(5000, millis)
    assert len(set(ids)) == 5000
    for text in [*ids, uuid7_string()]:
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
    # The first 48 bits are the millisecond; the variant digit stays random.
    assert {uuid.UUID(text).int >> 80 for text in ids} == {millis}
    assert {text[19] for text in ids} == set("89ab")
    assert all(text.startswith(uuid7_prefix(millis)) for text in ids)
    # Later milliseconds sort after earlier ones (as text, as PostgreSQL's
    # B-tree compares them), whatever their random bits.
    assert max(ids) < min(uuid7_strings(100, millis + 1))
    assert uuid7_strings(0) == []


def test_a_source_of_version_7_ids_gives_distinct_ids_of_now() -> None:
    source = Uuid7Source()
    before = time.time_ns() // 1_000_000
    ids = [source.next() for _ in range(1000)]  # more than one draw of randomness
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 1000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, text)
        assert before <= parsed.int >> 80 <= after
    assert {text[19] for text in ids} == set("89ab")


@given(
    st.datetimes(
        min_value=datetime(1000, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    )
)
def test_event_times_are_utc_with_milliseconds_truncated(moment: datetime) -> None:
    utc = moment.astimezone(UTC)
    expected = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    assert envelope.iso_millis(moment) == expected
