"""Page sizes and page tokens for List methods (AIP-158).

A page token is opaque to callers and authenticated: the cursor it carries is
MACed (HMAC-SHA256) together with the list it belongs to (the method, the
parent and every filter), so a hand-made token, an edited one, or one taken
from another list is INVALID_ARGUMENT, never a page of something else. The
keys come from outside (service/app derives them from the master keyring);
this module does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from hookkeeper.service.domain.errors import invalid

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# Tokens we issue are ~150 characters; anything far longer is refused unread.
MAX_TOKEN_LENGTH = 1024
_MAC_BYTES = 32
_VERSION = b"hk1"


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


def list_scope(method: str, *parts: str) -> bytes:
    """What a token is bound to: the List method, its parent and its filters
    (unambiguous: each part is length-prefixed)."""
    return b"".join(
        len(encoded).to_bytes(4, "big") + encoded
        for encoded in (p.encode("utf-8", "surrogatepass") for p in (method, *parts))
    )


@dataclass(frozen=True)
class PageTokens:
    """Issues and checks page tokens under the server's keys.

    ``keys[0]`` signs; every key verifies, so tokens issued just before a
    master-key rotation keep working for as long as the old key stays in the
    keyring.
    """

    keys: Sequence[bytes]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("page tokens need at least one key")

    def __repr__(self) -> str:
        return f"PageTokens(<{len(self.keys)} keys redacted>)"

    @staticmethod
    def _mac(key: bytes, scope: bytes, body: bytes) -> bytes:
        return hmac.new(key, _VERSION + scope + b"\0" + body, hashlib.sha256).digest()

    def encode(self, cursor: Cursor, scope: bytes) -> str:
        """An opaque token for the page after ``cursor`` of the list ``scope``."""
        body = json.dumps(
            [cursor.create_time.isoformat(), cursor.item_id], separators=(",", ":")
        ).encode()
        token = body + self._mac(self.keys[0], scope, body)
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def decode(self, token: str, scope: bytes) -> Cursor | None:
        """The cursor inside a token this list issued; None for the first page;
        INVALID_ARGUMENT naming ``page_token`` for anything else."""
        if not token:
            return None
        raw = self._authentic_body(token, scope)
        try:
            moment, item_id = json.loads(raw)
            return Cursor(datetime.fromisoformat(moment), str(item_id))
        except (ValueError, TypeError):
            # Authentic but unreadable: only a token from an incompatible version.
            raise _bad_token() from None

    def _authentic_body(self, token: str, scope: bytes) -> bytes:
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise _bad_token()
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise _bad_token() from None
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not any(
            hmac.compare_digest(mac, self._mac(key, scope, body)) for key in self.keys
        ):
            raise _bad_token()
        return body


def no_page_token(token: str) -> None:
    """Lists that fit on one page issue no tokens, so none is valid."""
    if token:
        raise _bad_token()


def _bad_token() -> Exception:
    return invalid("page_token", "is not a token this method returned for this list")
