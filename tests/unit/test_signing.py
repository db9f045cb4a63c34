"""The signature header, checked against an independent HMAC implementation."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC

from hookkeeper.service.domain import signing

BODY = b'{"eventType":"GuestReviewSubmitted","payload":{"id":1}}'


def independent(secret: str, timestamp: str, body: bytes) -> str:
    mac = HMAC(secret.encode(), hashes.SHA256())
    mac.update(f"{timestamp}.".encode() + body)
    return base64.b64encode(mac.finalize()).decode()


def test_single_secret_header() -> None:
    header = signing.sign(["s" * 24], "1764000000123", BODY)
    assert header == "sha256=" + independent("s" * 24, "1764000000123", BODY)


def test_two_secrets_newest_first() -> None:
    header = signing.sign(["new" * 8, "old" * 8], "1", BODY)
    new, old = header.removeprefix("sha256=").split(",")
    assert new == independent("new" * 8, "1", BODY)
    assert old == independent("old" * 8, "1", BODY)


def test_epoch_millis_is_exact() -> None:
    moment = datetime(2026, 11, 25, 12, 0, 0, 999_999, tzinfo=UTC)
    assert signing.epoch_millis(moment) == "1795608000999"
    assert signing.epoch_millis(datetime(1970, 1, 1, tzinfo=UTC)) == "0"


def test_verify_accepts_either_secret_and_rejects_tampering_and_staleness() -> None:
    now = datetime(2026, 11, 25, tzinfo=UTC)
    ts = signing.epoch_millis(now)
    header = signing.sign(["new" * 8, "old" * 8], ts, BODY)
    assert signing.verify(header, ts, BODY, ["old" * 8], now=now)
    assert signing.verify(header, ts, BODY, ["new" * 8], now=now)
    assert not signing.verify(header, ts, BODY + b" ", ["new" * 8], now=now)
    assert not signing.verify(header, ts, BODY, ["other" * 5], now=now)
    assert not signing.verify(header, ts, BODY, ["new" * 8], now=now + timedelta(minutes=6))
    assert not signing.verify("sha1=" + header[7:], ts, BODY, ["new" * 8], now=now)
