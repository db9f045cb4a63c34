"""Partner bearer tokens for the public gateway: their shape and their hash.

A token is 256 bits from the OS's CSPRNG, so a single fast SHA-256 is enough
to store it: nobody can guess the preimage, and unlike a password hash (which
exists to slow down guessing low-entropy secrets) it allows an indexed,
exact-match lookup on every authentication.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid

from hookkeeper.service.domain.errors import invalid
from hookkeeper.service.domain.text import is_scalar_text

# Recognisable in leaked-secret scanners and in support tickets.
TOKEN_PREFIX = "hkp_"
_TOKEN_BYTES = 32
MAX_DISPLAY_NAME = 200
# A token longer than this was never issued here; refuse it before hashing.
MAX_TOKEN_LENGTH = 256


def generate_token() -> str:
    """A new partner token: ``hkp_`` and 43 URL-safe characters (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def token_hash(token: str) -> str:
    """The stored form of a token: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    """Whether ``value`` has the shape of an issued token (no lookup needed otherwise)."""
    return (
        value.startswith(TOKEN_PREFIX)
        and 0 < len(value) <= MAX_TOKEN_LENGTH
        and is_scalar_text(value)
    )


def new_partner_id() -> str:
    """A new partner id (UUID 4)."""
    return str(uuid.uuid4())


def check_display_name(name: str) -> str:
    """The display name, stripped; INVALID_ARGUMENT naming ``display_name`` otherwise."""
    cleaned = name.strip()
    if not cleaned:
        raise invalid("display_name", "is required")
    if len(cleaned) > MAX_DISPLAY_NAME:
        raise invalid("display_name", f"must be at most {MAX_DISPLAY_NAME} characters")
    if any(not ch.isprintable() for ch in cleaned):
        raise invalid("display_name", "must not contain control characters")
    return cleaned


def parse_partner_id(value: str) -> str:
    """A partner id given as ``{uuid}`` or ``partners/{uuid}``, normalised."""
    raw = value.removeprefix("partners/")
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise invalid("partner", "must be a partner id (a UUID) or partners/{id}") from None
