"""Page sizes and opaque page tokens for List methods (AIP-158)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from hookkeeper.service.domain.errors import invalid

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Cursor:
    """Position after the last item of a page: its creation time and id."""

    create_time: datetime
    item_id: str


def page_size(requested: int) -> int:
    """0 means the default; above the maximum is clamped; negative is an error."""
    if requested < 0:
        raise invalid("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(cursor: Cursor) -> str:
    """An opaque token for the page after ``cursor``."""
    raw = json.dumps({"t": cursor.create_time.isoformat(), "i": cursor.item_id})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_token(token: str) -> Cursor | None:
    """The cursor inside a token; None for the first page."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return Cursor(datetime.fromisoformat(data["t"]), str(data["i"]))
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise invalid("page_token", "is not a token returned by this method") from None
