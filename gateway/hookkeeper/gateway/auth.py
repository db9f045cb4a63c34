"""Partner authentication: ``Authorization: Bearer <token>`` → partner, via
PartnerService.AuthenticatePartner, remembered briefly.

The cache keeps SHA-256 digests, not tokens, and only successful answers, so
a freshly issued token works at once. A revoked one stops working as soon as
the service's revocation feed says so (``revocations``); while that feed is
down the cache is off.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable
from typing import cast

import cachetools
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
    """Token digest → partner, least recently used first out, bounded in
    bytes (each entry is charged its key, its value and a fixed overhead),
    each entry living at most ``ttl_seconds``.

    Revocations reach it through ``forget_partner`` (the service's
    revocation feed); while that feed is down the cache is switched off, so
    a revocation it might have missed cannot be answered from memory.
    """

    # A dict slot, the tuple and two str objects, rounded up.
    ENTRY_OVERHEAD_BYTES = 256

    def __init__(self, ttl_seconds: float, max_bytes: int) -> None:
        self._ttl = ttl_seconds
        self._entries: cachetools.TTLCache[str, str] = cachetools.TTLCache(
            maxsize=max_bytes,
            ttl=max(ttl_seconds, 0.001),
            timer=time.monotonic,
            # The key is a 64-character hex digest.
            getsizeof=lambda partner: len(partner) + 64 + self.ENTRY_OVERHEAD_BYTES,
        )
        # Off until the revocation feed is live (``reset(enabled=True)``).
        self.enabled = False
        self._epoch = 0

    @property
    def size_bytes(self) -> int:
        """Bytes charged to the entries held."""
        return int(self._entries.currsize)

    def get(self, digest: str) -> str | None:
        """The cached partner, unless absent, expired or the cache is off."""
        if not self.enabled:
            return None
        return self._entries.get(digest)

    def epoch(self) -> int:
        """The forgetting counter; pass it back to ``put``."""
        return self._epoch

    def put(self, digest: str, partner: str, epoch: int | None = None) -> None:
        """Remembers a partner for the TTL, evicting the least recently used,
        unless something was forgotten since ``epoch`` (an answer that raced
        a revocation must not be remembered)."""
        if self.enabled and self._ttl > 0 and (epoch is None or epoch == self._epoch):
            self._entries[digest] = partner

    def forget_partner(self, partner: str) -> None:
        """Forgets every token of ``partner`` (some of them were revoked)."""
        self._epoch += 1
        for digest in [k for k, v in self._entries.items() if v == partner]:
            self._entries.pop(digest, None)

    def reset(self, *, enabled: bool) -> None:
        """Forgets everything and switches the cache on or off."""
        self._epoch += 1
        self._entries.clear()
        self.enabled = enabled and self._ttl > 0


def digest(token: str) -> str:
    """The cache key of a token (its SHA-256, never the token itself)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


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

    def cached(self, token: str) -> str | None:
        """The token's partner if the cache knows it (no RPC)."""
        return self._cache.get(digest(token))

    async def partner(self, token: str, options: rpc.CallOptions) -> str:
        """``partners/{id}`` of the token's partner; raises UNAUTHENTICATED
        (a GraphQLError) when the service knows no such token."""
        key = digest(token)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        epoch = self._cache.epoch()
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
        self._cache.put(key, partner, epoch)
        return partner
