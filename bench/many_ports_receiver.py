"""A webhook receiver listening on many ports of 127.0.0.1 at once: each
port is a distinct callback host for the dispatcher (its connection pool
keys connections by (scheme, host, port), the per-host cap by host:port).

Every request to a listening port is answered ``HTTP/1.1 200 OK`` with a
small body, keeping the connection alive; POSTs to ``/hook`` are counted,
and so are GETs (the connectivity check a new configuration queues). The
connections open at once over all those ports are counted two ways, each
with its peak: as this loop sees them (opened when accepted, closed once it
has read the close), and, at each accept, those the sender has not closed
yet: sockets still ESTABLISHED (on loopback a peer's close reaches this
socket at once, before this loop reads it).

A control port (a free one, printed on the "ready" line) answers
``GET /stats`` with a JSON object: ``posts``, ``gets``, ``open`` (now),
``peak`` and ``live_peak`` (since the start or the last reset) and
``connections`` (accepted in all); ``POST /reset`` sets both peaks to the
connections open now.

Runs in its own process so its CPU is not charged to the dispatcher. Raises
its RLIMIT_NOFILE soft limit to the hard limit first.

Usage: python -m bench.many_ports_receiver FIRST_PORT COUNT
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import sys

import httptools

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class _Stats:
    def __init__(self) -> None:
        self.posts = 0
        self.gets = 0
        self.open = 0
        self.peak = 0
        self.live_peak = 0
        self.connections = 0
        self.transports: set[asyncio.Transport] = set()

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "posts": self.posts,
                "gets": self.gets,
                "open": self.open,
                "peak": self.peak,
                "live_peak": self.live_peak,
                "connections": self.connections,
            }
        ).encode()


_stats = _Stats()


class _Http(asyncio.Protocol):
    """HTTP/1.1 server side of one connection (httptools parses requests)."""

    control = False

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self.control:
            _stats.open += 1
            _stats.connections += 1
            _stats.peak = max(_stats.peak, _stats.open)
            _stats.transports.add(transport)
            if _stats.open > _stats.live_peak:  # else the live count cannot pass it
                _stats.live_peak = max(_stats.live_peak, _live())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.control and self._transport is not None:
            _stats.open -= 1
            _stats.transports.discard(self._transport)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_message_complete(self) -> None:
        method = self._parser.get_method()
        url, self._url = self._url, b""
        if self._transport is None:
            return
        if self.control:
            self._transport.write(_control_answer(method, url))
            return
        if url.startswith(b"/hook"):
            if method == b"POST":
                _stats.posts += 1
            elif method == b"GET":
                _stats.gets += 1
        self._transport.write(_OK)
        if not self._parser.should_keep_alive():
            self._transport.close()


class _Control(_Http):
    control = True


def _live() -> int:
    """Connections the sender has not closed yet: sockets still ESTABLISHED
    (a peer's FIN makes them CLOSE_WAIT, its RST CLOSE), whether or not this
    loop has read the close yet."""
    count = 0
    for transport in _stats.transports:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 1:
            count += 1
    return count


def _control_answer(method: bytes, url: bytes) -> bytes:
    if method == b"POST" and url == b"/reset":
        _stats.peak = _stats.live_peak = _stats.open
    body = _stats.as_json()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    return head % len(body) + body


def _raise_nofile() -> int:
    """Raises the soft RLIMIT_NOFILE to the hard one; returns it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _listening(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as error:
        sock.close()
        raise SystemExit(
            f"many_ports_receiver: cannot listen on 127.0.0.1:{port} ({error.strerror}); "
            "choose another range (BENCH_HOSTS_FIRST_PORT)"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def _serve(first: int, count: int) -> None:
    limit = _raise_nofile()
    if count + 64 > limit:
        raise SystemExit(
            f"many_ports_receiver: RLIMIT_NOFILE {limit} cannot hold {count} listening sockets"
        )
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(_Http, sock=_listening(port))
        for port in range(first, first + count)
    ]
    control = await loop.create_server(_Control, host="127.0.0.1", port=0)
    control_port = control.sockets[0].getsockname()[1]
    print(f"ready {control_port}", flush=True)
    try:
        await asyncio.Event().wait()  # until killed
    finally:
        control.close()
        for server in servers:
            server.close()


def main() -> None:
    """Listens on COUNT ports from FIRST_PORT until killed."""
    first, count = int(sys.argv[1]), int(sys.argv[2])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(first, count))


if __name__ == "__main__":
    main()
