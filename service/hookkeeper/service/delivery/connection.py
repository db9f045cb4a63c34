"""One keep-alive HTTP/1.1 connection of the delivery client.

It writes a request and reads one answer at a time. httptools parses the
answer: its llhttp parser (Node.js's) handles the HTTP grammar, chunked bodies
and keep-alive rules; this class only routes its callbacks. Of the answer it
keeps the status and Retry-After; the body is counted and dropped, and a
connection whose body runs past ``max_body`` is closed rather than read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import httptools


class ConnectionLost(ConnectionError):
    """The connection closed before a whole answer's head arrived."""


class InvalidAnswer(ConnectionError):
    """The peer sent something that is not an HTTP/1.x answer."""


class Connection(asyncio.Protocol):
    """An HTTP/1.1 client connection: one exchange at a time."""

    def __init__(self, max_body: int, on_lost: Callable[[Connection], None]) -> None:
        self._max_body = max_body
        self._on_lost = on_lost
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._body_bytes = 0
        self._head_done = False
        # Of the current exchange:
        self.status = 0
        self.retry_after: bytes | None = None
        self.received = False  # any byte of its answer arrived
        self.reusable = False
        # When it went back to the pool (the loop's clock), and whether it
        # served an exchange before the current one.
        self.idle_since = 0.0
        self.reused = False

    @property
    def closed(self) -> bool:
        """The socket is closed (connection_lost has run)."""
        return self._transport is None

    @property
    def open(self) -> bool:
        """The connection can still carry a request."""
        return self._transport is not None and not self._transport.is_closing()

    def exchange(self, request: bytes) -> asyncio.Future[None]:
        """Sends ``request``; the future ends when its answer has been read
        (``status``, ``retry_after`` and ``reusable`` are then set)."""
        assert self._transport is not None, "exchange on a closed connection"
        assert self._waiter is None, "one exchange at a time"
        self.status, self.retry_after, self.received, self.reusable = 0, None, False, False
        self._body_bytes, self._head_done = 0, False
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return self._waiter

    def expire(self) -> None:
        """Ends a pending exchange with TimeoutError (its deadline passed)
        and closes the connection: its answer may still come."""
        self._fail(TimeoutError())

    def abort(self) -> None:
        """Closes at once, dropping anything unsent or unread."""
        if self._transport is not None:
            self._transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keeps the transport (always a stream transport here)."""
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Feeds the parser; a malformed answer ends the exchange and the connection."""
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(InvalidAnswer("the callback switched protocols"))
        except httptools.HttpParserError as error:
            self._fail(InvalidAnswer(f"invalid HTTP answer: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        """Ends a pending exchange: answered if its head had arrived (a body
        read until the connection closes ends here), else failed."""
        self._transport = None
        if self._head_done and self.status >= 200:
            self._finish(reusable=False)
        else:
            self._fail(ConnectionLost(str(exc) if exc else "the callback closed the connection"))
        self._on_lost(self)

    # httptools callbacks

    def on_message_begin(self) -> None:
        """An answer nobody asked for (the exchange ended) spoils the
        connection: it is dropped rather than read."""
        if self._waiter is None:
            self.reusable = False
            self.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        """Keeps Retry-After (the only header the outcome uses)."""
        if self._waiter is not None and len(name) == 11 and name.lower() == b"retry-after":
            self.retry_after = value

    def on_headers_complete(self) -> None:
        """Notes the status: from here a closed connection still answered."""
        if self._waiter is None:
            return
        self.status = self._parser.get_status_code()
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        """Counts the body; past ``max_body`` the answer is taken as read and
        the connection closed rather than drained."""
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body and self._waiter is not None:
            self._finish(reusable=False)
            self.abort()

    def on_message_complete(self) -> None:
        """Ends the exchange, except for an informational (1xx) answer,
        which precedes the real one."""
        if self._waiter is None:
            return
        if self.status < 200:
            self._head_done, self.retry_after = False, None
            return
        self._finish(reusable=self._parser.should_keep_alive())

    def _finish(self, *, reusable: bool) -> None:
        waiter, self._waiter = self._waiter, None
        self.reusable = reusable
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        self.reusable = False
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.abort()
