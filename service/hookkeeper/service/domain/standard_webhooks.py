"""The Standard Webhooks signature scheme (standardwebhooks.com), pure.

The secret is ``whsec_`` + Base64 of random bytes; the HMAC key is the
decoded bytes. Each notification carries ``webhook-id`` (the same on every
retry: the receiver's idempotency key), ``webhook-timestamp`` (Unix seconds
of the attempt) and ``webhook-signature``: ``v1,<Base64 HMAC-SHA256 of
"id.timestamp.body">`` per active secret, newest first, space-separated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _csprng
from collections.abc import Sequence
from datetime import datetime, timedelta

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
# The spec asks for 24 to 64 bytes; 32 is the HMAC-SHA256 block-size sweet spot.
SECRET_BYTES = 32
DEFAULT_TOLERANCE = timedelta(minutes=5)
_VERSION = "v1"


def generate_secret() -> str:
    """``whsec_`` + Base64 of 32 bytes from the operating system's CSPRNG."""
    return SECRET_PREFIX + base64.b64encode(_csprng.token_bytes(SECRET_BYTES)).decode()


def key_of(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret: its decoded Base64 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a Standard Webhooks secret starts with whsec_")
    try:
        return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("a Standard Webhooks secret is whsec_ + Base64") from None


def unix_seconds(moment: datetime) -> str:
    """The ``webhook-timestamp`` value of an aware datetime."""
    return str(int(moment.timestamp()))


def _digest(key: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
    return base64.b64encode(hmac.digest(key, signed, hashlib.sha256)).decode()


def sign(secrets_newest_first: Sequence[str], message_id: str, timestamp: str, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,`` entry per secret, newest first."""
    if not secrets_newest_first:
        raise ValueError("at least one secret is needed to sign")
    return " ".join(
        f"{_VERSION},{_digest(key_of(s), message_id, timestamp, body)}"
        for s in secrets_newest_first
    )


def verify(
    header: str,
    message_id: str,
    timestamp: str,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> bool:
    """Receiver side: true when the timestamp is within ``tolerance`` of
    ``now`` and any ``v1`` entry matches any secret (constant-time compare)."""
    if not timestamp.isdigit() or not message_id:
        return False
    if abs(now.timestamp() - int(timestamp)) > tolerance.total_seconds():
        return False
    offered = [
        entry.partition(",")[2]
        for entry in header.split(" ")
        if entry.partition(",")[0] == _VERSION
    ]
    expected = [_digest(key_of(s), message_id, timestamp, body) for s in secrets]
    matches = [hmac.compare_digest(o.encode(), e.encode()) for o in offered for e in expected]
    return any(matches)
