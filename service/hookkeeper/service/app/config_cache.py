"""A per-process read cache for the hot paths: Get and SignNotification.

Every delivery signs, and internal callers Get far more than they write, so
each replica keeps the rows it read. Correctness comes from invalidation, not
from the expiry: a write invalidates its configuration locally at once and,
through the store's change feed (PostgreSQL LISTEN/NOTIFY), on every other
replica a few milliseconds after commit. The cache is *disabled* whenever the
feed is not connected (and cleared when it reconnects), so a replica that
might have missed a change never answers from memory. Entries also expire
after a short time as a second line of defence.

A read that raced a write must not re-insert what the write replaced: readers
take ``epoch()`` before reading the database and ``put`` refuses the value if
any invalidation happened since.

Only sealed values are cached: secrets are decrypted per use, never kept in
plain text here.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

Key = tuple[str, str, str]
T = TypeVar("T")


class ConfigCache:
    """Bounded, time-limited cache keyed by (kind, partner id, config id)."""

    def __init__(
        self,
        *,
        ttl_seconds: float = 10.0,
        max_entries: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._monotonic = monotonic
        self._entries: OrderedDict[Key, tuple[float, Any]] = OrderedDict()
        self._epoch = 0
        self.enabled = False

    def epoch(self) -> int:
        """The invalidation counter; pass it back to ``put``."""
        return self._epoch

    def get(self, key: Key) -> Any | None:
        """The cached value, or None when absent, expired or disabled."""
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._monotonic() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: Key, value: Any, epoch: int) -> None:
        """Stores ``value`` unless disabled or invalidated since ``epoch``."""
        if not self.enabled or epoch != self._epoch:
            return
        self._entries[key] = (self._monotonic() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def invalidate(self, config_id: Hashable) -> None:
        """Forgets everything about one configuration."""
        self._epoch += 1
        for key in [k for k in self._entries if k[2] == config_id]:
            del self._entries[key]

    def reset(self, *, enabled: bool) -> None:
        """Forgets everything and switches the cache on or off."""
        self._epoch += 1
        self._entries.clear()
        self.enabled = enabled


async def read_through(cache: ConfigCache | None, key: Key, load: Callable[[], Awaitable[T]]) -> T:
    """The cached value for ``key``, or ``load()``'s (then cached). A load
    that raises (e.g. NotFound) caches nothing."""
    if cache is not None:
        hit: T | None = cache.get(key)
        if hit is not None:
            return hit
    epoch = cache.epoch() if cache is not None else 0
    value = await load()
    if cache is not None:
        cache.put(key, value, epoch)
    return value
