"""Cross-replica change notifications for the read cache (PostgreSQL only).

A write transaction calls ``announce`` with the configuration it changed;
PostgreSQL delivers the NOTIFY to every listening replica when (and only if)
the transaction commits. ``ChangeListener`` keeps one dedicated connection
listening and reconnects with backoff when it drops, telling its owner when it
is live and when it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from hookkeeper.service.store import batch
from hookkeeper.service.store.batch import QueuedWrites, Writer

CHANNEL = "hookkeeper_callback_config_changed"
# Payload: the id of a partner some of whose tokens were just revoked.
REVOCATION_CHANNEL = "hookkeeper_partner_tokens_revoked"
_PING_SECONDS = 5.0
_log = logging.getLogger(__name__)


async def announce(conn: Writer, config_id: str) -> None:
    """Tells every replica, on commit, that ``config_id`` changed (in the
    unit of work's one statement when its writes are queued, store/batch.py)."""
    if batch.dialect_name(conn) == "postgresql" and not await batch.notify(
        conn, CHANNEL, config_id
    ):
        assert not isinstance(conn, QueuedWrites)  # a queue always takes the notice
        await conn.execute(select(func.pg_notify(CHANNEL, config_id)))


async def announce_revocation(conn: AsyncConnection, partner_id: str) -> None:
    """Tells every replica, on commit, that tokens of ``partner_id`` were revoked."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_notify(REVOCATION_CHANNEL, partner_id)))


class ChangeListener:
    """Listens on a channel (the configuration change channel by default);
    calls ``on_change(payload)`` per notification and ``on_live(bool)``
    whenever the connection comes or goes."""

    def __init__(
        self,
        database_url: str,
        on_change: Callable[[str], None],
        on_live: Callable[[bool], None],
        channel: str = CHANNEL,
    ) -> None:
        self._dsn = (
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        self._on_change = on_change
        self._on_live = on_live
        self._channel = channel
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts listening in the background."""
        self._task = asyncio.create_task(self._run(), name=f"listen-{self._channel}")

    async def stop(self) -> None:
        """Stops listening; the owner is told the feed is no longer live."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._on_live(False)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._on_change(payload)

    async def _watch(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        # A peer that vanished without closing the socket is only noticed by
        # talking to it: ping every few seconds.
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), _PING_SECONDS)
                return
            try:
                await conn.execute("SELECT 1", timeout=_PING_SECONDS)
            except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError):
                return

    async def _run(self) -> None:
        delay = 0.5
        quiet = False  # one line per outage, not one per retry
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
            except (OSError, asyncpg.PostgresError, TimeoutError) as error:
                if not quiet:
                    _log.warning(
                        "change feed %s: cannot connect (%s); retrying quietly, feed off",
                        self._channel,
                        type(error).__name__,
                    )
                    quiet = True
                await asyncio.sleep(delay)
                # Capped low: the cache stays off until the feed is back.
                delay = min(delay * 2, 2)
                continue
            if quiet:
                _log.info("change feed %s: connected again; feed back on", self._channel)
                quiet = False
            try:
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(self._channel, self._notified)
                delay = 0.5
                self._on_live(True)
                await self._watch(conn, lost)
                _log.warning(
                    "change feed %s: connection lost; feed off until it is back", self._channel
                )
                quiet = True
            finally:
                self._on_live(False)
                if not conn.is_closed():
                    await conn.close()
