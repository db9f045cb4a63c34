"""Token revocations fanned out to watchers (the gateways' partner caches).

Tokens are revoked by ``hookkeeper partner revoke-token``, a process of its
own that writes the database; this process learns of it from a source:

- PostgreSQL: the revoking transaction NOTIFYs on commit
  (``store.change_feed.REVOCATION_CHANNEL``) and a listener here hears it;
- SQLite (one machine, no NOTIFY): a poll of the revoked-token counts per
  partner every quarter second (``poll_revocations``).

While its source is not live the feed is down: watching answers UNAVAILABLE
and every open watch ends, so no watcher can believe it missed nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable

from hookkeeper.service.domain.errors import Unavailable
from hookkeeper.service.domain.names import partner_name
from hookkeeper.service.store import partners as store
from hookkeeper.service.store.database import Database

_log = logging.getLogger(__name__)

# A watcher that falls this many batches behind is cut off (it reconnects
# and starts from an empty cache) rather than buffered without bound.
_MAX_PENDING = 1_000
POLL_SECONDS = 0.25
_LOST = "the token revocation feed is not live; watch again shortly"


class TokenRevocations:
    """The process's revocation feed: live or not, and its watchers."""

    def __init__(self) -> None:
        self.live = False
        self._watchers: set[asyncio.Queue[list[str] | None]] = set()

    def publish(self, partner_ids: Iterable[str]) -> None:
        """Tells every watcher that these partners had tokens revoked."""
        names = sorted({partner_name(p) for p in partner_ids})
        if not names:
            return
        for queue in list(self._watchers):
            try:
                queue.put_nowait(names)
            except asyncio.QueueFull:
                self._end(queue)

    def set_live(self, live: bool) -> None:
        """Records whether the source is live; going down ends every watch."""
        if self.live and not live:
            for queue in list(self._watchers):
                self._end(queue)
        self.live = live

    def _end(self, queue: asyncio.Queue[list[str] | None]) -> None:
        self._watchers.discard(queue)
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                queue.get_nowait()
        queue.put_nowait(None)

    async def watch(self, heartbeat_seconds: float) -> AsyncIterator[list[str]]:
        """Batches of revoked partners' names: first an empty one (the watch
        is live), then one per revocation, and an empty one after every
        ``heartbeat_seconds`` of quiet. Raises Unavailable when the feed is
        (or goes) down."""
        if not self.live:
            raise Unavailable(_LOST)
        queue: asyncio.Queue[list[str] | None] = asyncio.Queue(_MAX_PENDING)
        self._watchers.add(queue)
        try:
            yield []
            while True:
                try:
                    batch = await asyncio.wait_for(queue.get(), heartbeat_seconds)
                except TimeoutError:
                    yield []
                    continue
                if batch is None:
                    raise Unavailable(_LOST)
                yield batch
        finally:
            self._watchers.discard(queue)


async def poll_revocations(
    database: Database, feed: TokenRevocations, stop: asyncio.Event, interval: float = POLL_SECONDS
) -> None:
    """The SQLite source: compares revoked-token counts per partner every
    ``interval`` seconds and publishes the partners whose count grew."""
    known: dict[str, int] | None = None
    while not stop.is_set():
        try:
            async with database.read() as conn:
                counts = await store.revoked_counts(conn)
        except Exception as error:  # the database's own errors vary by driver
            if feed.live:
                _log.warning("revocation poll failed (%s); feed down", type(error).__name__)
            feed.set_live(False)
            known = None
        else:
            if known is not None:
                feed.publish(p for p, n in counts.items() if n > known.get(p, 0))
            known = counts
            feed.set_live(True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    feed.set_live(False)
