"""The delivery client's connection pool: bounded in total, kept alive per
host, and guarded against SSRF at connect time.

- At most ``limit`` sockets are held at once, over all hosts: connections
  open, being opened, or closing (a transport closes its socket a loop
  iteration after abort()). With the pool full, the connection idle longest,
  of any host, is closed to make room, and the caller waits for its socket
  to close; with none idle, for a connection to come back. So 10,000
  distinct callback hosts cost at most ``limit`` sockets.
- Idle connections are reused most recent first, and dropped once idle longer
  than ``keepalive`` seconds: below the 5 s that common servers (Node.js,
  nginx's 75 s, Go's 90 s) keep an idle connection open, so the server is
  rarely the one to close it first.
- The guard: a host name is resolved here, and only addresses a callback may
  reach are connected to. The check applies to the very addresses connected
  to, every time a connection is opened, so a name that later resolves to an
  internal address (DNS rebinding) is refused as well. IP literals are checked
  before any connection (``http.refusal``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from hookkeeper.service.delivery.connection import Connection
from hookkeeper.service.delivery.target import Target
from hookkeeper.service.domain.addresses import forbidden_reason

_KEEPALIVE_SECONDS = 4.0

Key = tuple[str, str, int]
# A host name and port to the addresses it resolves to, in preference order.
Resolve = Callable[[str, int], Awaitable[list[str]]]


class ForbiddenAddress(OSError):
    """The callback host resolves only to addresses a callback may not reach."""


class Pool:
    """Open connections of one process, at most ``limit`` of them."""

    def __init__(
        self,
        *,
        limit: int,
        guarded: bool,
        max_body: int,
        tls: ssl.SSLContext | None = None,
        keepalive: float = _KEEPALIVE_SECONDS,
        resolve: Resolve | None = None,
    ) -> None:
        self._limit = limit
        self._resolve = resolve or system_addresses
        self._guarded = guarded
        self._max_body = max_body
        self._tls = tls
        self._keepalive = keepalive
        self._members: set[Connection] = set()  # open, idle or busy
        self._opening = 0
        # Aborted but not yet closed: a transport closes its socket a loop
        # iteration after abort(), so these still hold a socket and count
        # against the limit until their connection_lost.
        self._closing: set[Connection] = set()
        # Idle connections: per key (most recently used last), and over all
        # keys (least recently used first) to pick one to close when full.
        self._idle_by_key: dict[Key, list[Connection]] = {}
        self._idle: OrderedDict[Connection, Key] = OrderedDict()
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def size(self) -> int:
        """Sockets held: connections open, being opened or closing."""
        return len(self._members) + self._opening + len(self._closing)

    async def acquire(self, target: Target) -> Connection:
        """A connection to ``target``: an idle one, else a new one (waiting
        while the pool is full and nothing is idle)."""
        while True:
            conn = self.take_idle(target.key)
            if conn is not None:
                return conn
            if self.size < self._limit:
                return await self._open(target)
            if self._idle:
                # The connection idle longest makes room once its socket is
                # closed (at once if it was already).
                self._drop(next(iter(self._idle)))
                if self.size < self._limit:
                    continue
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: the next one may go
                else:
                    with contextlib.suppress(ValueError):  # already taken
                        self._waiters.remove(waiter)
                raise

    def release(self, conn: Connection, key: Key) -> None:
        """Takes ``conn`` back after an exchange: kept if still reusable,
        else closed."""
        if conn.reusable and conn.open and conn in self._members:
            conn.idle_since = asyncio.get_running_loop().time()
            conn.reused = True
            self._idle_by_key.setdefault(key, []).append(conn)
            self._idle[conn] = key
        else:
            self._drop(conn)
        self._wake_one()

    def discard(self, conn: Connection) -> None:
        """Closes ``conn`` (an exchange on it was cut short)."""
        self._drop(conn)
        self._wake_one()

    async def close(self) -> None:
        """Closes every connection."""
        for conn in list(self._members):
            self._drop(conn)
        await asyncio.sleep(0)  # lets the transports run their close callbacks

    def take_idle(self, key: Key) -> Connection | None:
        """An idle connection to ``key`` still fit for use, or None."""
        stack = self._idle_by_key.get(key)
        if not stack:
            return None
        now = asyncio.get_running_loop().time()
        while stack:
            conn = stack.pop()
            del self._idle[conn]
            if conn.open and now - conn.idle_since < self._keepalive:
                if not stack:
                    del self._idle_by_key[key]
                return conn
            self._drop(conn)
        del self._idle_by_key[key]
        return None

    def _drop(self, conn: Connection) -> None:
        key = self._idle.pop(conn, None)
        if key is not None:
            stack = self._idle_by_key[key]
            stack.remove(conn)
            if not stack:
                del self._idle_by_key[key]
        self._members.discard(conn)
        if not conn.closed:
            self._closing.add(conn)
            conn.abort()

    def _lost(self, conn: Connection) -> None:
        """A connection's socket closed (by either side): its place is free."""
        if conn in self._closing:
            self._closing.discard(conn)
            self._wake_one()
        elif conn in self._members:
            self._drop(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _open(self, target: Target) -> Connection:
        self._opening += 1
        try:
            conn = await self._connect(target)
        except BaseException:
            self._opening -= 1
            self._wake_one()  # its place in the pool is free again
            raise
        self._opening -= 1
        self._members.add(conn)
        return conn

    async def _connect(self, target: Target) -> Connection:
        """Connects to the first reachable allowed address of the target."""
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if target.tls else None
        failure: OSError | None = None
        for address in await self.addresses(target):
            try:
                _, conn = await loop.create_connection(
                    lambda: Connection(self._max_body, self._lost),
                    host=address,
                    port=target.port,
                    ssl=tls,
                    server_hostname=target.host if tls else None,
                )
            except OSError as error:
                failure = error
                continue
            return conn
        assert failure is not None  # addresses() returns at least one
        raise failure

    async def addresses(self, target: Target) -> list[str]:
        """The addresses to try, in the resolver's order; ForbiddenAddress
        when the guard leaves none."""
        if target.literal:
            return [target.host]
        found = await self._resolve(target.host, target.port)
        if not self._guarded:
            return found
        allowed = [a for a in found if forbidden_reason(a.partition("%")[0]) is None]
        if not allowed:
            reasons = sorted({forbidden_reason(a.partition("%")[0]) or "" for a in found})
            raise ForbiddenAddress(
                f"callback host {target.host} resolves to {', '.join(reasons) or 'no address'}"
            )
        return allowed

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            # The system's trust store (SSL_CERT_FILE and SSL_CERT_DIR apply),
            # certificate and host name checked: as aiohttp's default.
            self._tls = ssl.create_default_context()
        return self._tls


async def system_addresses(host: str, port: int) -> list[str]:
    """The system resolver's addresses for ``host`` (getaddrinfo, off the loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
