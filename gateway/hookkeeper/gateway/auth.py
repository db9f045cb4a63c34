"""Partner authentication: ``Authorization: Bearer <token>`` → partner, via
PartnerService.AuthenticatePartner, remembered briefly.

The cache keeps SHA-256 digests, not tokens, and only successful answers, so
a freshly issued token works at once; a revoked one stops working within the
cache's time to live (30 s by default).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import cast

import grpc

from hookkeeper.gateway import rpc
from hookkeeper.gateway.errors import (
    INTERNAL,
    INTERNAL_MESSAGE,
    api_error,
    from_rpc_error,
    unauthenticated,
)
from hookkeeper.notifications.v1 import partner_pb2

MISSING = "send Authorization: Bearer <partner token>"
REFUSED = "the partner token is not valid"


class PartnerCache:
    """A bounded least-recently-used map of token digest → partner, with a TTL."""

    def __init__(self, ttl_seconds: float, max_entries: int) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def get(self, digest: str) -> str | None:
        """The cached partner, unless absent or expired."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        expires, partner = entry
        if expires <= time.monotonic():
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return partner

    def put(self, digest: str, partner: str) -> None:
        """Remembers a partner for the TTL, evicting the least recently used."""
        if self._ttl <= 0:
            return
        self._entries[digest] = (time.monotonic() + self._ttl, partner)
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None without one."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authenticator:
    """Resolves partner tokens through the service, with a short cache."""

    def __init__(self, stubs: rpc.Stubs, cache: PartnerCache) -> None:
        self._stubs = stubs
        self._cache = cache

    async def partner(self, token: str, options: rpc.CallOptions) -> str:
        """``partners/{id}`` of the token's partner; raises UNAUTHENTICATED
        (a GraphQLError) when the service knows no such token."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(digest)
        if cached is not None:
            return cached
        try:
            pending = self._stubs.partners.AuthenticatePartner(
                partner_pb2.AuthenticatePartnerRequest(token=token),
                timeout=options.timeout(),
                metadata=options.metadata,
            )
            reply = await cast(Awaitable[partner_pb2.AuthenticatePartnerResponse], pending)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise unauthenticated(REFUSED) from None
            raise from_rpc_error(error, {}, "partner") from None
        partner: str = reply.partner.name
        if not partner.startswith("partners/"):
            raise api_error(INTERNAL, INTERNAL_MESSAGE)
        self._cache.put(digest, partner)
        return partner
