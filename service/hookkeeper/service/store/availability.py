"""Whether the database answers, told once per change.

Every transaction reports here: a failure that means the database cannot be
reached marks it down, any success marks it up again. The log says once that
it went away and once that it came back (no traceback per request), and
listeners (gRPC health) hear of each change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import asyncpg
from sqlalchemy import exc as sa_exc

_log = logging.getLogger("hookkeeper.database")


class ConnectionLost(Exception):
    """A statement failed because its connection died under it. asyncpg may
    report that as a client error ("another operation is in progress") when
    the server goes away mid-statement; SQLAlchemy's path calls it a
    disconnect, and ``Database.driver`` says so with this."""


# Errors that say "the server is not there / not accepting us", as opposed to
# "the statement is wrong" (which stays a bug, INTERNAL, with a traceback).
_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable host, DNS failure
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,  # pg_ctl stop while connected
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,  # the connection died mid-statement
    ConnectionLost,
)


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` (or what it wraps) means the database cannot be reached."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, _UNREACHABLE):
            return True
        if isinstance(current, asyncpg.InterfaceError) and "closed" in str(current):
            return True
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and id(orig) not in seen:
            current = orig
            continue
        current = current.__cause__ or current.__context__
    return False


class Availability:
    """The database's state as this process last saw it."""

    def __init__(self) -> None:
        self.up = True
        self._down_since = 0.0
        self._listeners: list[Callable[[bool], None]] = []
        # Set on every change; whoever waits for one clears it.
        self.changed = asyncio.Event()

    def subscribe(self, listener: Callable[[bool], None]) -> None:
        """Calls ``listener(up)`` on every change from now on."""
        self._listeners.append(listener)

    def went_down(self, error: BaseException) -> None:
        """The database could not be reached (logged once per outage)."""
        if not self.up:
            return
        self.up = False
        self._down_since = time.monotonic()
        # The type only: driver messages may name hosts, users or databases.
        _log.error(
            "database unreachable (%s): answering UNAVAILABLE and reporting NOT_SERVING "
            "until it is back",
            type(error).__name__,
        )
        self._tell(False)

    def came_back(self) -> None:
        """The database answered again (logged once per outage)."""
        if self.up:
            return
        self.up = True
        _log.warning(
            "database reachable again after %.1fs: SERVING", time.monotonic() - self._down_since
        )
        self._tell(True)

    def _tell(self, up: bool) -> None:
        self.changed.set()
        for listener in self._listeners:
            listener(up)
