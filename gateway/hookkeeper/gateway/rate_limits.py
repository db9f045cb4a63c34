"""Rate limits of the public gateway, with the ``limits`` library.

Two limits, both moving windows:

- per partner: every mutation field of a request (aliases included) is one
  operation, a query is one (``HOOKKEEPER_GATEWAY_RATE_LIMIT``);
- per client address, for requests without a valid token
  (``HOOKKEEPER_GATEWAY_ANON_RATE_LIMIT``): checked before any work is done
  for them, so a flood of anonymous or forged requests costs a counter
  lookup each.

Counters live in memory (one gateway) or, with a ``redis://`` storage URL,
in Redis, where every gateway replica shares them. A storage that cannot be
reached makes the gateway answer UNAVAILABLE rather than run unlimited; the
log says so once when it goes and once when it comes back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

_log = logging.getLogger(__name__)
T = TypeVar("T")

# A storage slower than this counts as unreachable (the request gets a 503).
STORAGE_TIMEOUT_SECONDS = 1.0
_NAMESPACE = "hookkeeper-gateway"


class RateLimited(Exception):
    """Over the limit; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limit exceeded; retry after {retry_after} s")
        self.retry_after = retry_after


class LimiterUnavailable(Exception):
    """The counters' storage cannot be reached."""


def storage_uri(url: str) -> str:
    """The ``limits`` async storage URI for a setting: ``memory://`` or a
    ``redis://``/``rediss://`` URL (``async+`` is added)."""
    if url.startswith("async+"):
        return url
    return f"async+{url}"


@dataclass(frozen=True)
class RateLimitSettings:
    """The two limits (``limits`` notation, e.g. ``50/second``) and the storage URL."""

    partner: str
    anonymous: str
    storage_url: str


DEFAULT_RATE_LIMITS = RateLimitSettings("50/second", "5/second", "memory://")


def check_limit(text: str, setting: str) -> RateLimitItem:
    """The parsed limit; ValueError naming the setting when malformed."""
    try:
        return parse(text)
    except ValueError:
        raise ValueError(
            f"{setting} must look like '50/second' or '1000 per minute', not {text!r}"
        ) from None


class RateLimits:
    """The gateway's limiters over one storage."""

    def __init__(self, settings: RateLimitSettings) -> None:
        self._partner = check_limit(settings.partner, "HOOKKEEPER_GATEWAY_RATE_LIMIT")
        self._anonymous = check_limit(settings.anonymous, "HOOKKEEPER_GATEWAY_ANON_RATE_LIMIT")
        storage = storage_from_string(storage_uri(settings.storage_url))
        if not isinstance(storage, Storage):
            raise ValueError("HOOKKEEPER_RATE_LIMIT_STORAGE must name an async storage")
        self._storage = storage
        base = storage.base_exceptions
        self._storage_errors: tuple[type[Exception], ...] = (
            *(base if isinstance(base, tuple) else (base,)),
            StorageError,
            OSError,
            TimeoutError,
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._reachable = True

    async def _guarded(self, pending: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(STORAGE_TIMEOUT_SECONDS):
                result = await pending
        except self._storage_errors as error:
            if self._reachable:
                self._reachable = False
                _log.error(
                    "rate-limit storage unreachable (%s); answering 503 until it is back",
                    type(error).__name__,
                )
            raise LimiterUnavailable from None
        if not self._reachable:
            self._reachable = True
            _log.warning("rate-limit storage reachable again")
        return result

    async def _refusal(self, item: RateLimitItem, key: str) -> RateLimited:
        stats = await self._guarded(self._limiter.get_window_stats(item, _NAMESPACE, key))
        return RateLimited(max(1, math.ceil(stats.reset_time - time.time())))

    async def _hit(self, item: RateLimitItem, key: str, cost: int) -> None:
        if not await self._guarded(self._limiter.hit(item, _NAMESPACE, key, cost=cost)):
            raise await self._refusal(item, key)

    async def _test(self, item: RateLimitItem, key: str) -> None:
        if not await self._guarded(self._limiter.test(item, _NAMESPACE, key)):
            raise await self._refusal(item, key)

    async def anonymous_hit(self, address: str) -> None:
        """Counts one request without a valid token from ``address``."""
        await self._hit(self._anonymous, f"anonymous/{address}", 1)

    async def anonymous_test(self, address: str) -> None:
        """RateLimited when ``address`` has no unauthenticated requests left
        (nothing is counted: only refusals are)."""
        await self._test(self._anonymous, f"anonymous/{address}")

    async def partner_test(self, partner: str) -> None:
        """RateLimited when the partner has no operations left right now."""
        await self._test(self._partner, partner)

    async def partner_hit(self, partner: str, operations: int) -> None:
        """Counts ``operations`` for the partner; RateLimited (counting
        nothing) when that many are not left."""
        await self._hit(self._partner, partner, max(1, operations))
