"""The JSON body of a notification and the validation of published payloads.

The reference leaves the envelope unconfirmed; ours (docs/delivery.md) is::

    {"eventId": "...", "eventType": "...", "eventTime": "2026-01-15T12:00:00.000Z",
     "partnerId": "...", "test": false, "payload": {...}}

Keys in that order, compact separators, UTF-8. The body is built once per
attempt from the stored event, and the signature is computed over exactly the
bytes sent.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from hookkeeper.service.domain.errors import FieldViolation, InvalidArgument, invalid
from hookkeeper.service.domain.json_limits import MAX_JSON_DEPTH, exceeds_depth
from hookkeeper.service.domain.text import check_scalar_text, is_scalar_text

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_EVENT_ID_LENGTH = 128


class _NotPortable(ValueError):
    """A JSON value other JSON parsers would not read back the same."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotPortable(f"the number {text[:32]} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise _NotPortable(f"{name} is not JSON")


# Built once: ``json.loads`` and ``json.dumps`` with keyword arguments build a
# new decoder or encoder on every call, which was a third of the cost of
# normalising a small payload (BatchPublishEvents normalises a thousand per
# call). Both are stateless between calls, so sharing them is safe.
_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def normalize_payload(payload_json: str, field: str = "payload_json") -> str:
    """The compact form of a JSON object given as a string; INVALID_ARGUMENT
    naming ``field`` when it is not a JSON object, is too large or too deep,
    or holds what UTF-8 or other parsers cannot carry (lone surrogates,
    NaN, numbers out of range)."""
    if not payload_json:
        raise invalid(field, "is required: a JSON object as a string")
    if len(payload_json.encode("utf-8", "surrogatepass")) > MAX_PAYLOAD_BYTES:
        raise invalid(field, f"must be at most {MAX_PAYLOAD_BYTES} bytes")
    if violation := check_scalar_text(payload_json, field):
        raise InvalidArgument([violation])
    if exceeds_depth(payload_json):
        raise invalid(field, f"must not nest arrays and objects more than {MAX_JSON_DEPTH} deep")
    try:
        value = _DECODER.decode(payload_json)
    except json.JSONDecodeError as error:
        raise invalid(field, f"is not valid JSON: {error.msg} at character {error.pos}") from None
    except _NotPortable as error:
        raise invalid(field, f"is not portable JSON: {error}") from None
    except (ValueError, RecursionError):
        raise invalid(field, "is not valid JSON") from None
    if not isinstance(value, dict):
        raise invalid(field, "must be a JSON object")
    normalized = _ENCODER.encode(value)
    # A \ud800 escape decodes to a lone surrogate: valid JSON text, but not
    # storable or sendable as UTF-8.
    if not is_scalar_text(normalized):
        raise invalid(field, "must be valid Unicode: it escapes a lone surrogate")
    return normalized


def check_event_id(event_id: str, field: str = "event_id") -> FieldViolation | None:
    """A non-empty printable id of at most 128 characters."""
    if not event_id:
        return FieldViolation(field, "is required")
    if violation := check_scalar_text(event_id, field):
        return violation
    if len(event_id) > MAX_EVENT_ID_LENGTH:
        return FieldViolation(field, f"must be at most {MAX_EVENT_ID_LENGTH} characters")
    if not event_id.isprintable():
        return FieldViolation(field, "must be printable characters only")
    return None


def raise_for(violations: list[FieldViolation | None]) -> None:
    """Raises one InvalidArgument naming every bad field."""
    found = [v for v in violations if v is not None]
    if found:
        raise InvalidArgument(found)


def iso_millis(moment: datetime) -> str:
    """``2026-01-15T12:00:00.000Z``."""
    # isoformat in C, not strftime: this runs once per attempt.
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


def build(
    *,
    event_id: str,
    event_type: str,
    event_time: datetime,
    partner_id: str,
    payload_json: str,
    test: bool = False,
) -> bytes:
    """The body bytes. ``payload_json`` must already be normalized (a JSON object)."""
    head = _ENCODER.encode(
        {
            "eventId": event_id,
            "eventType": event_type,
            "eventTime": iso_millis(event_time),
            "partnerId": partner_id,
            "test": test,
        }
    )
    # The payload is spliced in verbatim: it was normalized when stored, so it
    # is not parsed and dumped again on every attempt.
    return (head[:-1] + ',"payload":' + payload_json + "}").encode()
