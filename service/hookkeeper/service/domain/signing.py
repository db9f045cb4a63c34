"""The ``x-eg-notification-signature-v2`` scheme, for senders and receivers.

``sha256=`` then the Base64 HMAC-SHA256 of ``timestamp + "." + body`` under
each active secret, newest first, comma-separated; ``timestamp`` is the
epoch-milliseconds value sent in ``x-eg-notification-timestamp``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

SIGNATURE_HEADER = "x-eg-notification-signature-v2"
TIMESTAMP_HEADER = "x-eg-notification-timestamp"
_PREFIX = "sha256="
DEFAULT_TOLERANCE = timedelta(minutes=5)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_millis(moment: datetime) -> str:
    """The epoch-milliseconds string of an aware datetime."""
    # Integer arithmetic on timedelta: float timestamps lose milliseconds.
    return str((moment - _EPOCH) // timedelta(milliseconds=1))


def _digest(secret: str, timestamp: str, body: bytes) -> str:
    # hmac.digest: OpenSSL's one-shot HMAC, without an HMAC object per call.
    mac = hmac.digest(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return base64.b64encode(mac).decode()


def sign(secrets_newest_first: Sequence[str], timestamp: str, body: bytes) -> str:
    """The header value for ``body`` sent at ``timestamp`` (epoch ms)."""
    if not secrets_newest_first:
        raise ValueError("at least one secret is needed to sign")
    return _PREFIX + ",".join(_digest(s, timestamp, body) for s in secrets_newest_first)


def verify(
    header: str,
    timestamp: str,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> bool:
    """Receiver side: true when the timestamp is fresh and any signature in
    ``header`` matches any of ``secrets`` (compared in constant time)."""
    if not header.startswith(_PREFIX) or not timestamp.isdigit():
        return False
    sent_ms = int(timestamp)
    now_ms = int(now.timestamp() * 1000)
    if abs(now_ms - sent_ms) > tolerance.total_seconds() * 1000:
        return False
    offered = [s.strip() for s in header[len(_PREFIX) :].split(",") if s.strip()]
    expected = [_digest(secret, timestamp, body) for secret in secrets]
    # Every pair is compared so the time taken does not depend on which matched.
    matches = [hmac.compare_digest(o.encode(), e.encode()) for o in offered for e in expected]
    return any(matches)
