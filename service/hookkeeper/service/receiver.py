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
matching either is accepted. See examples/receiver.py and docs/delivery.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hookkeeper.service.domain import signing

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
    try:
        envelope = json.loads(body)
    except ValueError:
        raise SignatureError("the body is not JSON") from None
    if not isinstance(envelope, dict):
        raise SignatureError("the body is not a JSON object")
    return envelope
