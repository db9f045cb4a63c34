"""The database engine: PostgreSQL through asyncpg, or an embedded SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from hookkeeper.service.domain.errors import Unavailable
from hookkeeper.service.store.availability import Availability, ConnectionLost, is_unreachable
from hookkeeper.service.store.group_commit import GroupCommit

_WRITE = "hookkeeper_write"
# The planner settings of the dispatcher's queue connections (``driver()``).
# The queue's statistics are stale by nature: a bulk publish adds 100,000 due
# rows in a second, ANALYZE follows up to a minute later, and
# until then the planner guesses a few dozen due rows and plans the claim as
# a bitmap scan of every due row plus a sort, 30 ms and more per claim on a
# queue of 30,000 (docs/delivery.md, round 6). Without bitmap and sequential
# scans the only plan left reads the due index in order and stops at the
# claim's LIMIT, whatever the statistics say; and the record looks each
# outcome's row up by its key.
QUEUE_PLANNER_SETTINGS = {"enable_bitmapscan": "off", "enable_seqscan": "off"}
# Queue connections per process: the dispatcher runs two claims and one
# record at once.
_QUEUE_POOL_SIZE = 3

# The store's handle on an open transaction. The layers above pass it to the
# repository functions without looking inside, so they need not know SQLAlchemy.
Connection: TypeAlias = AsyncConnection


class Database:
    """Owns the engine and hands out transactions.

    On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so concurrent
    writers queue on SQLite's lock instead of failing half-way; PostgreSQL
    writers serialise on row locks taken by the repositories.
    """

    def __init__(self, url: str, *, pool_size: int = 20, connect_timeout: float = 5.0) -> None:
        parsed = make_url(url)
        self.availability = Availability()
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        # hide_parameters: bound values (ciphertext, e-mail addresses) stay out
        # of exception messages and logs.
        options: dict[str, Any] = {"pool_pre_ping": False, "hide_parameters": True}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            options.update(
                pool_size=pool_size,
                max_overflow=pool_size,
                # Waiting longer for a free connection than for a new one helps nobody.
                pool_timeout=max(connect_timeout, 1.0),
                # asyncpg waits 60 s for a host that does not answer.
                connect_args={"timeout": connect_timeout},
            )
        self.engine: AsyncEngine = create_async_engine(url, **options)
        self._queue_engine: AsyncEngine | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        else:
            # Its own small pool: the settings hold for the connection's
            # whole life, so no other statement ever runs under them.
            queue_options = {
                **options,
                "pool_size": _QUEUE_POOL_SIZE,
                "max_overflow": _QUEUE_POOL_SIZE,
                "connect_args": {
                    "timeout": connect_timeout,
                    "server_settings": QUEUE_PLANNER_SETTINGS,
                },
            }
            self._queue_engine = create_async_engine(url, **queue_options)
        # Blind writes of concurrent callers share round trips and commits
        # (PostgreSQL; SQLite serialises writers on its file lock anyway).
        self.group_commit: GroupCommit | None = (
            None if self.is_sqlite else GroupCommit(self.autocommit, self.write)
        )

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        """A connection for single-statement reads.

        On PostgreSQL it runs in autocommit: one statement is atomic on its
        own, and skipping BEGIN/ROLLBACK saves two round trips per read.
        Raises ``Unavailable`` when the database cannot be reached.
        """
        async with self._reachable(), self.engine.connect() as conn:
            if not self.is_sqlite:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn
                return
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Connection]:
        """A connection for a write that is one statement, atomic on its own:
        on PostgreSQL each statement commits by itself, without the two round
        trips of BEGIN and COMMIT; on SQLite, a write transaction."""
        if self.is_sqlite:
            async with self.write() as conn:
                yield conn
            return
        async with self._reachable(), self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Connection]:
        """A transaction for writes: committed on success, rolled back on
        error. Raises ``Unavailable`` when the database cannot be reached."""
        async with self._reachable(), self.engine.connect() as conn:
            await conn.execution_options(**{_WRITE: True})
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[asyncpg.Connection]:
        """PostgreSQL only: the asyncpg connection of a queue connection, for
        the dispatcher's claim and record statements (docs/delivery.md): its
        planner reaches rows only through indexes (``QUEUE_PLANNER_SETTINGS``).
        No
        SQLAlchemy execution path (its cursor adapter, result rows and
        greenlet switches per statement). Outside any transaction, so each
        statement commits by itself, as in ``autocommit``; asyncpg prepares
        each statement once per connection. A connection whose statement
        failed other than by the server's refusal (a dropped connection, a
        cancellation midway) is closed, never pooled again; one lost under
        its statement is reported as an outage, as on SQLAlchemy's path."""
        engine = self._queue_engine or self.engine
        async with self._reachable(), engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            if driver is None:
                raise ConnectionLost("the pooled connection is closed")
            try:
                yield driver
            except BaseException as error:
                lost = driver.is_closed()
                if lost or not isinstance(error, asyncpg.PostgresError) or is_unreachable(error):
                    await conn.invalidate()
                if lost and isinstance(error, Exception) and not is_unreachable(error):
                    raise ConnectionLost("the connection was lost mid-statement") from error
                raise

    @asynccontextmanager
    async def _reachable(self) -> AsyncIterator[None]:
        """Turns "cannot reach the database" into ``Unavailable`` and keeps
        ``availability`` current; every other error passes unchanged."""
        try:
            yield
        except PoolTimeout:
            # Reachable but saturated: retryable, yet no outage.
            raise Unavailable("the database is overloaded; retry later") from None
        except Exception as error:
            if not is_unreachable(error):
                raise
            self.availability.went_down(error)
            raise Unavailable("the database cannot be reached; retry later") from None
        if not self.availability.up:
            # Flipped before any await, so one caller does what follows.
            self.availability.came_back()
            # Connections pooled before the outage are dead: start afresh.
            await self._dispose()

    async def probe(self, limit_seconds: float) -> bool:
        """Whether the database answers ``SELECT 1`` within ``limit_seconds``
        seconds; updates ``availability`` either way."""
        try:
            async with (
                asyncio.timeout(limit_seconds),
                self._reachable(),
                self.engine.connect() as conn,
            ):
                await conn.execute(text("SELECT 1"))
        except Unavailable:
            return False
        except TimeoutError as error:
            self.availability.went_down(error)
            return False
        return True

    async def close(self) -> None:
        """Waits for the blind writes in flight, then closes every pooled connection."""
        if self.group_commit is not None:
            await self.group_commit.close()
        await self._dispose()

    async def _dispose(self) -> None:
        await self.engine.dispose()
        if self._queue_engine is not None:
            await self._queue_engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    # SQLAlchemy's documented recipe for aiosqlite: take BEGIN away from the
    # driver so we can choose BEGIN IMMEDIATE for writers.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: SyncConnection) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
