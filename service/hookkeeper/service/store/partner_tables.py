"""Tables of partner accounts and their gateway bearer tokens.

Tokens are kept only as SHA-256 hashes (see docs/gateway.md for why a fast
hash suffices for 256-bit random tokens).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, String, Table

from hookkeeper.service.store.tables import UTCDateTime, metadata

partner_accounts = Table(
    "partner_accounts",
    metadata,
    Column("partner_id", String(128), ForeignKey("partners.id"), primary_key=True),
    Column("display_name", String(200), nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
)

partner_tokens = Table(
    "partner_tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "partner_id",
        String(128),
        ForeignKey("partner_accounts.partner_id"),
        nullable=False,
        index=True,
    ),
    # Hex SHA-256 of the token: the lookup key, unique.
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("create_time", UTCDateTime, nullable=False),
    # Set when revoked: the token authenticates no more.
    Column("revoke_time", UTCDateTime, nullable=True),
)
