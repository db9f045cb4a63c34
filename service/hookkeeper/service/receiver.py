"""Receiver-side verification of Hookkeeper notifications, for partners.

Use it in the handler of your callback URL::

    from hookkeeper.service.receiver import SignatureError, verify_notification

    try:
        event = verify_notification(request.headers, await request.read(), [secret])
    except SignatureError as error:
        return 401  # do not process it
    # event["eventId"], event["eventType"], event["payload"] ...; deduplicate by
    # the transactionId header (delivery is at least once).

During a secret rotation pass both secrets (new and previous): a signature
matching either is accepted. Both signature schemes are verified: a request
carrying ``webhook-signature`` is checked as Standard Webhooks (pass the
``whsec_`` secrets; deduplicate by ``webhook-id``), any other as
``x-eg-notification-signature-v2``. See examples/receiver.py,
docs/delivery.md and docs/endpoint-health.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hookkeeper.service.domain import signing
from hookkeeper.service.domain import standard_webhooks as swh

TRANSACTION_HEADER = "transactionId"
DEFAULT_TOLERANCE = signing.DEFAULT_TOLERANCE


class SignatureError(ValueError):
    """The notification is not authentic or not fresh (the reason is safe to log)."""


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    raise SignatureError(f"missing header {name}")


def verify_notification(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: datetime | None = None,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Checks the signature header against one or two secrets and the timestamp
    against ``tolerance``; returns the parsed envelope. Raises SignatureError."""
    if not 1 <= len(secrets) <= 2:
        raise ValueError("pass one secret, or two during a rotation")
    if any(key.lower() == swh.SIGNATURE_HEADER for key in headers):
        _verify_standard_webhooks(headers, body, secrets, now or datetime.now(UTC), tolerance)
        return _envelope(body)
    header = _header(headers, signing.SIGNATURE_HEADER)
    timestamp = _header(headers, signing.TIMESTAMP_HEADER)
    if not timestamp.isdigit():
        raise SignatureError(f"{signing.TIMESTAMP_HEADER} is not epoch milliseconds")
    moment = now or datetime.now(UTC)
    sent = datetime.fromtimestamp(int(timestamp) / 1000, UTC)
    if abs(moment - sent) > tolerance:
        raise SignatureError("the timestamp is outside the tolerance (stale or replayed)")
    if not signing.verify(header, timestamp, body, list(secrets), now=moment, tolerance=tolerance):
        raise SignatureError("no signature matches the given secrets")
    return _envelope(body)


def _verify_standard_webhooks(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    now: datetime,
    tolerance: timedelta,
) -> None:
    header = _header(headers, swh.SIGNATURE_HEADER)
    message_id = _header(headers, swh.ID_HEADER)
    timestamp = _header(headers, swh.TIMESTAMP_HEADER)
    if not timestamp.isdigit():
        raise SignatureError(f"{swh.TIMESTAMP_HEADER} is not Unix seconds")
    if abs(now.timestamp() - int(timestamp)) > tolerance.total_seconds():
        raise SignatureError("the timestamp is outside the tolerance (stale or replayed)")
    try:
        matched = swh.verify(
            header, message_id, timestamp, body, list(secrets), now=now, tolerance=tolerance
        )
    except ValueError:
        raise SignatureError("a Standard Webhooks secret is whsec_ + Base64") from None
    if not matched:
        raise SignatureError("no signature matches the given secrets")


def _envelope(body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(body)
    except ValueError:
        raise SignatureError("the body is not JSON") from None
    if not isinstance(envelope, dict):
        raise SignatureError("the body is not a JSON object")
    return envelope
