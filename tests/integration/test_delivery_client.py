"""The delivery client (``delivery/http.py``, ``pool.py``, ``connection.py``,
``target.py``) against real servers on 127.0.0.1, no mocks.

Three kinds of server: raw ``asyncio.start_server`` ones scripted byte by
byte where the wire must be exact (they keep the request bytes as sent and
send crafted answers), aiohttp ``web`` servers (``tests/support/receiver.py``
among them), and TLS servers with trustme certificates. ``Sender`` takes no
TLS context, so the tests that trust a trustme CA point SSL_CERT_FILE at it
(``ssl.create_default_context()`` reads it when the pool makes its context);
a test shows that without it the same server is refused.

Every wait is bounded: requests carry short timeouts and waits on servers
give up after two seconds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import struct
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from hookkeeper.service.app.sending import Answer
from hookkeeper.service.delivery import pool as pool_module
from hookkeeper.service.delivery.connection import Connection
from hookkeeper.service.delivery.http import Sender
from hookkeeper.service.delivery.pool import ForbiddenAddress, Pool, Resolve
from hookkeeper.service.delivery.target import target_of
from hookkeeper.service.telemetry.state import state as telemetry_state
from tests.support.processes import free_port
from tests.support.receiver import Received, Receiver

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
AGENT = "Hookkeeper-Notifications/1.0"
HEADER_REFUSED = "a header holds a line break or NUL: the request cannot be sent"
COLON_REFUSED = "a header name holds a colon: the request cannot be sent"


# --- Raw scripted servers -------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as a raw server read it off the wire."""

    conn: int  # the connection it came on, numbered in accept order
    raw: bytes

    @property
    def head(self) -> bytes:
        return self.raw.partition(b"\r\n\r\n")[0]

    @property
    def body(self) -> bytes:
        return self.raw.partition(b"\r\n\r\n")[2]

    @property
    def request_line(self) -> bytes:
        return self.head.split(b"\r\n")[0]

    @property
    def fields(self) -> list[tuple[str, str]]:
        """(lower-case name, value) of each header line, in order."""
        lines = self.head.decode("latin-1").split("\r\n")[1:]
        return [(n.lower(), v.strip()) for n, _, v in (line.partition(":") for line in lines)]

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.fields if n == name.lower()]


@dataclass
class Gauge:
    """Connections open at once, over any number of servers."""

    now: int = 0
    peak: int = 0

    def opened(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def closed(self) -> None:
        self.now -= 1


class Peer:
    """One accepted connection, as a script drives it."""

    def __init__(
        self,
        server: RawServer,
        index: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.index = index
        self._reader = reader
        self._writer = writer

    async def request(self) -> Seen | None:
        """The next whole request (head, and the body its Content-Length
        announces); None once the client has closed the connection."""
        try:
            head = await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as eof:
            self._client_closed(eof.partial)
            return None
        except ConnectionResetError:
            self._client_closed(b"")
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        try:
            body = await self._reader.readexactly(length)
        except asyncio.IncompleteReadError as eof:
            self._client_closed(head + eof.partial)
            return None
        seen = Seen(self.index, head + body)
        self.server.seen.append(seen)
        return seen

    async def until_closed(self) -> None:
        """Waits until the client closes, keeping whatever else it sent."""
        try:
            rest = await self._reader.read()
        except ConnectionResetError:
            rest = b""
        self._client_closed(rest)

    def _client_closed(self, leftover: bytes) -> None:
        self.server.ended[self.index] = leftover

    def send(self, data: bytes) -> None:
        self._writer.write(data)

    def close(self) -> None:
        """Closes this side (a FIN)."""
        self._writer.close()

    def reset(self) -> None:
        """Closes with a RST (SO_LINGER 0)."""
        sock = self._writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()


Script = Callable[[Peer], Awaitable[None]]


class RawServer:
    """``asyncio.start_server`` on 127.0.0.1; ``script`` plays each connection."""

    def __init__(self, script: Script, gauge: Gauge | None = None) -> None:
        self._script = script
        self.gauge = gauge or Gauge()
        self.accepted = 0
        self.seen: list[Seen] = []
        # Connections the client closed: what it sent after its last whole request.
        self.ended: dict[int, bytes] = {}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, rest: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{rest}"

    def on(self, conn: int) -> list[Seen]:
        """The requests received on connection ``conn``."""
        return [s for s in self.seen if s.conn == conn]

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index, self.accepted = self.accepted, self.accepted + 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        self.gauge.opened()
        try:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await self._script(Peer(self, index, reader, writer))
        finally:
            writer.close()
            self.gauge.closed()

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._server.wait_closed()


def answering(*answers: bytes, delay: float = 0) -> Script:
    """Answers each request on a connection with the next of ``answers``
    (the last one repeated), after ``delay`` seconds, until the client closes."""

    async def script(peer: Peer) -> None:
        sent = 0
        while await peer.request() is not None:
            if delay:
                await asyncio.sleep(delay)
            peer.send(answers[min(sent, len(answers) - 1)])
            sent += 1

    return script


def per_connection(*scripts: Script) -> Script:
    """Connection n plays scripts[n] (the last one for the rest)."""

    async def script(peer: Peer) -> None:
        await scripts[min(peer.index, len(scripts) - 1)](peer)

    return script


async def never_answering(peer: Peer) -> None:
    """Reads the request and stays silent until the client hangs up."""
    await peer.request()
    await peer.until_closed()


async def eventually(predicate: Callable[[], bool], within: float = 2.0) -> None:
    """Waits (bounded) until ``predicate()`` holds."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


# --- aiohttp servers ------------------------------------------------------


@dataclass
class WebSeen:
    method: str
    path_qs: str
    peer: tuple[str, int]  # the client's address: one per TCP connection
    secure: bool


@dataclass
class WebServer:
    """An aiohttp server answering 200 to anything, recording each request."""

    tls: ssl.SSLContext | None = None
    requests: list[WebSeen] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def connections(self) -> int:
        return len({r.peer for r in self.requests})

    def url(self, rest: str = "/hook") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{rest}"

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        assert request.transport is not None
        peer = request.transport.get_extra_info("peername")
        self.requests.append(
            WebSeen(request.method, request.path_qs, (peer[0], peer[1]), request.secure)
        )
        return web.Response(text="ok")

    async def start(self) -> WebServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls).start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# --- The fixture ----------------------------------------------------------


class Rig:
    """Servers and senders of one test, all closed at its end (senders first)."""

    def __init__(self) -> None:
        self._raw: list[RawServer] = []
        self._web: list[WebServer] = []
        self._receivers: list[Receiver] = []
        self._senders: list[Sender] = []
        self._pools: list[Pool] = []

    async def raw(self, script: Script, gauge: Gauge | None = None) -> RawServer:
        server = await RawServer(script, gauge).start()
        self._raw.append(server)
        return server

    async def web(self, tls: ssl.SSLContext | None = None) -> WebServer:
        server = await WebServer(tls).start()
        self._web.append(server)
        return server

    async def receiver(self) -> Receiver:
        receiver = await Receiver().start()
        self._receivers.append(receiver)
        return receiver

    def sender(self, *, allow_insecure: bool = True, max_connections: int = 100) -> Sender:
        sender = Sender(allow_insecure=allow_insecure, max_connections=max_connections)
        self._senders.append(sender)
        return sender

    def pool(
        self,
        *,
        limit: int = 4,
        guarded: bool = False,
        keepalive: float = 4.0,
        resolve: Resolve | None = None,
    ) -> Pool:
        """A pool as Sender makes one (64 KiB of answer body read)."""
        pool = Pool(
            limit=limit, guarded=guarded, max_body=64 * 1024, keepalive=keepalive, resolve=resolve
        )
        self._pools.append(pool)
        return pool

    async def close(self) -> None:
        for sender in self._senders:
            await sender.close()
        for pool in self._pools:
            await pool.close()
        for server in self._raw:
            await server.stop()
        for site in self._web:
            await site.stop()
        for receiver in self._receivers:
            await receiver.stop()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    made = Rig()
    try:
        yield made
    finally:
        await made.close()


async def send(
    sender: Sender,
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    seconds: float = 2.0,
) -> Answer:
    return await sender.request(
        method, url, headers=headers or {}, body=body, timeout_seconds=seconds
    )


async def exchange(pool: Pool, url: str) -> Connection:
    """One GET through ``pool`` with the head ``target_of`` makes; the
    connection goes back to the pool."""
    target = target_of(url)
    conn = await asyncio.wait_for(pool.acquire(target), 2)
    try:
        await asyncio.wait_for(conn.exchange(b"GET" + target.head + b"\r\n"), 2)
    except BaseException:
        pool.discard(conn)
        raise
    pool.release(conn, target.key)
    return conn


# --- 1. The request on the wire ---------------------------------------------


async def test_the_request_on_the_wire(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry_state, "tracer_provider", None)  # no traceparent
    server = await rig.raw(answering(OK))
    body = '{"guest":"Zoë"}'.encode()
    answer = await send(
        rig.sender(),
        server.url("/hook path/été?q=a b&name=é&keep=%2F&empty=#fragment"),
        method="POST",
        headers={"Content-Type": "application/json", "transactionId": "tx-1", "api-key": "k1"},
        body=body,
    )
    assert answer == Answer(200, answer.latency_ms, "")
    [seen] = server.seen
    assert seen.request_line == (
        b"POST /hook%20path/%C3%A9t%C3%A9?q=a%20b&name=%C3%A9&keep=%2F&empty= HTTP/1.1"
    )
    assert sorted(seen.fields) == sorted(
        [
            ("host", f"127.0.0.1:{server.port}"),
            ("user-agent", AGENT),
            ("content-type", "application/json"),
            ("transactionid", "tx-1"),
            ("api-key", "k1"),
            ("content-length", str(len(body))),
        ]
    )
    assert seen.body == body


async def test_a_get_without_body_has_no_content_length_and_nothing_after_its_head(
    rig: Rig,
) -> None:
    server = await rig.raw(answering(OK))
    sender = rig.sender()
    assert (await send(sender, server.url("/check"), headers={"api-key": "k"})).http_status == 200
    assert (await send(sender, server.url("/empty"), method="POST", body=b"")).http_status == 200
    await sender.close()
    await eventually(lambda: 0 in server.ended)
    get, empty_post = server.seen
    assert get.request_line == b"GET /check HTTP/1.1"
    assert [n for n, _ in get.fields] == ["host", "user-agent", "api-key"]
    assert get.raw.endswith(b"api-key: k\r\n\r\n")
    # The POST came right after the GET's head: the GET sent no body bytes.
    assert empty_post.request_line == b"POST /empty HTTP/1.1"
    assert empty_post.values("content-length") == ["0"]
    assert server.ended == {0: b""}  # nothing after the last request either


@pytest.mark.parametrize(
    ("user_info", "credentials", "hidden"),
    [
        ("al%40ice:p%C3%A4ss%3Aw0rd", "al@ice:päss:w0rd", [b"ice", b"w0rd", b"p%C3%A4ss"]),
        ("bob", "bob:", [b"bob"]),
        ("carol:", "carol:", [b"carol"]),
    ],
)
async def test_user_info_is_sent_as_basic_authorization_only(
    rig: Rig, user_info: str, credentials: str, hidden: list[bytes]
) -> None:
    server = await rig.raw(answering(OK))
    url = f"http://{user_info}@127.0.0.1:{server.port}/hook?x=1"
    assert (await send(rig.sender(), url)).http_status == 200
    [seen] = server.seen
    assert seen.request_line == b"GET /hook?x=1 HTTP/1.1"
    assert seen.values("host") == [f"127.0.0.1:{server.port}"]
    expected = base64.b64encode(credentials.encode()).decode()
    assert seen.values("authorization") == [f"Basic {expected}"]
    assert b"@" not in seen.raw
    for piece in hidden:
        assert piece not in seen.raw


async def test_idna_host_header_and_address_fallback_through_the_pool(rig: Rig) -> None:
    """target_of's head on the wire for an international name, which the
    resolver is asked for in its IDNA form; the first address refuses and
    the pool connects to the next."""
    server = await rig.raw(answering(OK))
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["127.0.0.2", "127.0.0.1"]  # nothing listens on 127.0.0.2

    pool = rig.pool(resolve=resolve)
    conn = await exchange(pool, f"http://Bücher.Example:{server.port}/grüße?q=ü")
    assert (conn.status, conn.reusable) == (200, True)
    assert asked == [("xn--bcher-kva.example", server.port)]
    [seen] = server.seen
    assert seen.request_line == b"GET /gr%C3%BC%C3%9Fe?q=%C3%BC HTTP/1.1"
    assert seen.values("host") == [f"xn--bcher-kva.example:{server.port}"]


# --- 2. Keep-alive ---------------------------------------------------------------


async def test_twenty_sequential_requests_use_one_connection(rig: Rig) -> None:
    server = await rig.web()
    sender = rig.sender()
    for n in range(20):
        answer = await send(sender, server.url(f"/hook?n={n}"), method="POST", body=b"{}")
        assert answer.http_status == 200, answer
    assert [r.path_qs for r in server.requests] == [f"/hook?n={n}" for n in range(20)]
    assert server.connections == 1


@pytest.mark.parametrize(
    ("answer", "connections"),
    [
        pytest.param(OK, 1, id="http/1.1"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 2, id="close"
        ),
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 2, id="http/1.0"),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            1,
            id="http/1.0-keep-alive",
        ),
    ],
)
async def test_reuse_follows_the_answers_keep_alive_rules(
    rig: Rig, answer: bytes, connections: int
) -> None:
    """The server never closes: only the client's reading of the answer
    decides whether the second request gets a new connection."""
    server = await rig.raw(answering(answer))
    sender = rig.sender()
    for _ in range(2):
        assert (await send(sender, server.url())).http_status == 200
    assert server.accepted == connections
    assert [s.conn for s in server.seen] == [0, connections - 1]
    if connections == 2:
        await eventually(lambda: 0 in server.ended)  # the client closed the first


# --- 3. Connections the server closes ---------------------------------------


async def test_an_idle_connection_the_server_closed_is_replaced(rig: Rig) -> None:
    async def close_when_idle(peer: Peer) -> None:
        await peer.request()
        peer.send(OK)
        await asyncio.sleep(0.05)
        peer.close()

    server = await rig.raw(per_connection(close_when_idle, answering(OK)))
    sender = rig.sender()
    assert (await send(sender, server.url("/one"))).http_status == 200
    await asyncio.sleep(0.15)  # closed by the server, idle in the client's pool
    answer = await send(sender, server.url("/two"), method="POST", body=b"two")
    assert answer.http_status == 200, answer
    assert [(s.conn, s.request_line) for s in server.seen] == [
        (0, b"GET /one HTTP/1.1"),
        (1, b"POST /two HTTP/1.1"),
    ]


@pytest.mark.parametrize("close", ["fin", "rst"])
async def test_a_reused_connection_closed_before_any_answer_byte_is_retried_once(
    rig: Rig, close: str
) -> None:
    """The race of a server closing an idle connection as the request
    leaves: it reads the second request and closes without a byte."""

    async def close_on_second(peer: Peer) -> None:
        await peer.request()
        peer.send(OK)
        await peer.request()
        peer.close() if close == "fin" else peer.reset()

    server = await rig.raw(per_connection(close_on_second, answering(OK)))
    sender = rig.sender()
    assert (await send(sender, server.url(), method="POST", body=b"one")).http_status == 200
    answer = await send(sender, server.url(), method="POST", body=b"two")
    assert answer.http_status == 200, answer
    assert [(s.conn, s.body) for s in server.seen] == [(0, b"one"), (0, b"two"), (1, b"two")]
    assert server.on(1)[0].raw == server.on(0)[1].raw  # the same bytes, sent once more
    assert server.accepted == 2


async def test_a_new_connection_closed_before_any_answer_byte_is_not_retried(
    rig: Rig,
) -> None:
    async def close_at_once(peer: Peer) -> None:
        await peer.request()
        peer.close()

    server = await rig.raw(close_at_once)
    answer = await send(rig.sender(), server.url(), method="POST", body=b"once")
    assert answer == Answer(0, answer.latency_ms, "the callback closed the connection")
    assert [s.body for s in server.seen] == [b"once"]
    assert server.accepted == 1


async def test_a_reused_connection_closed_within_the_answer_is_not_retried(rig: Rig) -> None:
    async def cut_second_answer(peer: Peer) -> None:
        await peer.request()
        peer.send(OK)
        await peer.request()
        peer.send(b"HTTP/1.1 200 O")
        await asyncio.sleep(0.02)
        peer.close()

    server = await rig.raw(per_connection(cut_second_answer, answering(OK)))
    sender = rig.sender()
    assert (await send(sender, server.url(), method="POST", body=b"one")).http_status == 200
    answer = await send(sender, server.url(), method="POST", body=b"two")
    assert (answer.http_status, answer.error) == (0, "the callback closed the connection")
    assert [(s.conn, s.body) for s in server.seen] == [(0, b"one"), (0, b"two")]
    assert server.accepted == 1


# --- 4. Answer framing -----------------------------------------------------------


async def test_a_chunked_answer_is_read_whole_and_keeps_the_connection(rig: Rig) -> None:
    async def chunked(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.send(b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
            await asyncio.sleep(0.02)
            peer.send(b"lo\r\n6\r\n world\r\n")
            await asyncio.sleep(0.02)
            peer.send(b"0\r\nX-Trailer: t\r\n\r\n")

    server = await rig.raw(chunked)
    sender = rig.sender()
    for _ in range(3):
        answer = await send(sender, server.url())
        assert answer == Answer(202, answer.latency_ms, ""), answer
    assert server.accepted == 1
    assert server.ended == {}


async def test_an_answer_without_length_is_read_until_the_server_closes(rig: Rig) -> None:
    async def until_close(peer: Peer) -> None:
        await peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
        await asyncio.sleep(0.1)
        peer.send(b"part two")
        peer.close()

    server = await rig.raw(until_close)
    sender = rig.sender()
    first = await send(sender, server.url())
    assert first.http_status == 200, first
    assert first.latency_ms >= 90  # it waited for the close, the end of the body
    second = await send(sender, server.url())
    assert second.http_status == 200, second
    assert [s.conn for s in server.seen] == [0, 1]


async def test_informational_answers_are_skipped(rig: Rig) -> None:
    async def informational(peer: Peer) -> None:
        await peer.request()
        peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await asyncio.sleep(0.03)
        peer.send(OK)
        await peer.request()
        # A 1xx's headers are not the answer's: this Retry-After is not kept.
        peer.send(b"HTTP/1.1 103 Early Hints\r\nRetry-After: 99\r\n\r\n")
        peer.send(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
        await answering(OK)(peer)

    server = await rig.raw(informational)
    sender = rig.sender()
    first = await send(sender, server.url(), method="POST", body=b"{}")
    assert first == Answer(200, first.latency_ms, ""), first
    assert first.latency_ms >= 25  # it waited for the 200 after the 100
    second = await send(sender, server.url(), method="POST", body=b"{}")
    assert second == Answer(503, second.latency_ms, "the callback answered HTTP 503"), second
    third = await send(sender, server.url())
    assert third.http_status == 200
    assert server.accepted == 1  # the real answers, not the 1xx, ended each exchange


_BIG = 70_000


@pytest.mark.parametrize(
    ("answer", "status", "retry_after", "reused"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n" + b"x" * 65536,
            200,
            None,
            True,
            id="64KiB-exactly",
        ),
        pytest.param(
            # Announces 1 MiB, sends 70,000 bytes and waits: the client must
            # not wait for the rest.
            b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + b"x" * _BIG,
            200,
            None,
            False,
            id="content-length-past-64KiB",
        ),
        pytest.param(
            b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"8000\r\n" + b"y" * 0x8000 + b"\r\n") * 3,
            503,
            "7",
            False,
            id="chunked-past-64KiB-never-ending",
        ),
        pytest.param(
            b"HTTP/1.1 500 Oops\r\n\r\n" + b"z" * _BIG,
            500,
            None,
            False,
            id="until-close-past-64KiB-never-closed",
        ),
    ],
)
async def test_a_big_answer_counts_with_its_status_and_closes_the_connection(
    rig: Rig, answer: bytes, status: int, retry_after: str | None, reused: bool
) -> None:
    server = await rig.raw(answering(answer))
    sender = rig.sender()
    for _ in range(2):
        got = await send(sender, server.url(), seconds=3.0)
        assert (got.http_status, got.retry_after) == (status, retry_after), got
        assert got.latency_ms < 1500  # it did not wait for the timeout
    assert server.accepted == (1 if reused else 2)
    if not reused:
        await eventually(lambda: 0 in server.ended)  # dropped by the client


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"garbage\r\n\r\n", "invalid HTTP answer: "),
        (b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n", "invalid HTTP answer: "),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "invalid HTTP answer: "),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid HTTP answer: "),
        (b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", "invalid HTTP answer: "),
        (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "the callback switched protocols",
        ),
    ],
)
async def test_a_malformed_answer_is_a_failure_not_an_exception(
    rig: Rig, answer: bytes, error: str
) -> None:
    """The server keeps the connection open: the client gives up at once
    rather than at its timeout, and drops the connection."""
    server = await rig.raw(answering(answer))
    sender = rig.sender()
    got = await send(sender, server.url(), seconds=2.0)
    assert got.http_status == 0, got
    assert got.error.startswith(error), got
    assert got.latency_ms < 1000
    await eventually(lambda: 0 in server.ended)
    again = await send(sender, server.url(), seconds=2.0)
    assert again.http_status == 0
    assert server.accepted == 2


@pytest.mark.parametrize("delay", [None, 0.05], ids=["same-packet", "while-idle"])
async def test_an_unsolicited_answer_spoils_the_connection(rig: Rig, delay: float | None) -> None:
    stray = b"HTTP/1.1 500 Stray\r\nContent-Length: 0\r\n\r\n"

    async def with_stray(peer: Peer) -> None:
        await peer.request()
        if delay is None:
            peer.send(OK + stray)
        else:
            peer.send(OK)
            await asyncio.sleep(delay)
            peer.send(stray)
        await answering(OK)(peer)

    server = await rig.raw(per_connection(with_stray, answering(NO_CONTENT)))
    sender = rig.sender()
    assert (await send(sender, server.url())).http_status == 200
    await eventually(lambda: 0 in server.ended)  # the client dropped it
    second = await send(sender, server.url())
    assert second.http_status == 204, second  # not the stray 500
    assert [s.conn for s in server.seen] == [0, 1]


# --- 5. Retry-After and redirects --------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "kept"),
    [
        (429, "120", "120"),
        (503, "Wed, 21 Oct 2026 07:28:00 GMT", "Wed, 21 Oct 2026 07:28:00 GMT"),
        (500, "120", None),
        (502, "120", None),
        (200, "120", None),
        (302, "120", None),
    ],
)
async def test_retry_after_is_kept_for_429_and_503_only(
    rig: Rig, status: int, retry_after: str, kept: str | None
) -> None:
    receiver = await rig.receiver()

    async def behaviour(_: Received) -> tuple[int, dict[str, str]]:
        return status, {"Retry-After": retry_after}

    receiver.behaviour = behaviour
    answer = await send(rig.sender(), receiver.url, method="POST", body=b"{}")
    error = "" if status == 200 else f"the callback answered HTTP {status}"
    assert answer == Answer(status, answer.latency_ms, error, kept)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_a_failure_and_is_not_followed(rig: Rig, status: int) -> None:
    elsewhere = await rig.receiver()
    receiver = await rig.receiver()

    async def redirect(_: Received) -> tuple[int, dict[str, str]]:
        return status, {"Location": elsewhere.url}

    receiver.behaviour = redirect
    answer = await send(rig.sender(), receiver.url, method="POST", body=b"{}")
    assert answer == Answer(status, answer.latency_ms, f"the callback answered HTTP {status}")
    assert len(receiver.requests) == 1
    await asyncio.sleep(0.1)
    assert elsewhere.requests == []


# --- 6. Timeouts ---------------------------------------------------------------


async def test_no_answer_in_time_fails_and_the_connection_is_not_reused(rig: Rig) -> None:
    server = await rig.raw(per_connection(never_answering, answering(OK)))
    sender = rig.sender()
    answer = await send(sender, server.url(), method="POST", body=b"{}", seconds=0.3)
    assert (answer.http_status, answer.error) == (0, "no answer within 0.3s")
    assert 290 <= answer.latency_ms < 1000, answer
    await eventually(lambda: 0 in server.ended)  # the client hung up
    assert server.ended[0] == b""
    fast = await send(sender, server.url(), method="POST", body=b"{}", seconds=2.0)
    assert fast.http_status == 200, fast
    assert [s.conn for s in server.seen] == [0, 1]


@contextlib.contextmanager
def stalled_port() -> Iterator[int]:
    """A port on 127.0.0.1 whose listen queue is full: Linux drops further
    SYNs, so a connect to it gets no answer (until the fillers go)."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        for _ in range(3):
            filler = socket.socket()
            fillers.append(filler)
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def require_stall(port: int) -> None:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.2)
    except TimeoutError:
        return
    writer.close()
    pytest.skip("this kernel completes connections past a full listen queue")


async def test_a_connect_that_gets_no_answer_times_out(rig: Rig) -> None:
    sender = rig.sender()
    with stalled_port() as port:
        await require_stall(port)
        answer = await send(sender, f"http://127.0.0.1:{port}/hook", seconds=0.3)
    assert (answer.http_status, answer.error) == (0, "no answer within 0.3s")
    assert 290 <= answer.latency_ms < 1000, answer


# --- 7. Header injection ---------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"api-key": "k\r\nX-Injected: 1"}, HEADER_REFUSED),
        ({"api-key": "k\nX-Injected: 1"}, HEADER_REFUSED),
        ({"api-key": "k\rX-Injected: 1"}, HEADER_REFUSED),
        ({"api-key": "k\x00"}, HEADER_REFUSED),
        ({"X-Injected: 1\r\napi-key": "k"}, HEADER_REFUSED),
        ({"X-Injected: 1\r\n\r\nGET / HTTP/1.1\r\nX": "k"}, HEADER_REFUSED),
        ({"api-key: other": "k"}, COLON_REFUSED),
    ],
)
async def test_a_header_that_could_break_its_line_sends_nothing(
    rig: Rig, headers: dict[str, str], error: str
) -> None:
    server = await rig.raw(answering(OK))
    sender = rig.sender()
    refused = await send(sender, server.url(), method="POST", headers=headers, body=b"{}")
    assert refused == Answer(0, 0, error)
    await asyncio.sleep(0.05)
    assert server.accepted == 0  # no connection was even opened
    # With a kept-alive connection idle in the pool: still not a byte on it.
    assert (await send(sender, server.url(), headers={"api-key": "k"})).http_status == 200
    refused = await send(sender, server.url(), method="POST", headers=headers, body=b"{}")
    assert refused == Answer(0, 0, error)
    await sender.close()
    await eventually(lambda: 0 in server.ended)
    assert server.ended == {0: b""}
    assert len(server.seen) == 1


# --- 8. Pool bounds --------------------------------------------------------------


async def test_the_pool_never_holds_more_connections_than_its_limit(rig: Rig) -> None:
    gauge = Gauge()  # connections open at once, over all twelve servers
    servers = [await rig.raw(answering(OK, delay=0.03), gauge) for _ in range(12)]
    sender = rig.sender(max_connections=4)
    for _ in range(2):  # the second round reuses, or evicts idle ones to open
        answers = await asyncio.gather(*(send(sender, s.url(), seconds=5.0) for s in servers))
        assert [a.http_status for a in answers] == [200] * 12, answers
    assert gauge.peak == 4
    assert all(len(s.seen) == 2 for s in servers)


async def test_the_limit_holds_for_many_requests_to_one_host(rig: Rig) -> None:
    gauge = Gauge()
    server = await rig.raw(answering(OK, delay=0.03), gauge)
    sender = rig.sender(max_connections=2)
    answers = await asyncio.gather(*(send(sender, server.url(), seconds=5.0) for _ in range(6)))
    assert [a.http_status for a in answers] == [200] * 6
    assert (gauge.peak, server.accepted, len(server.seen)) == (2, 2, 6)


async def test_the_least_recently_used_idle_connection_makes_room(rig: Rig) -> None:
    a, b, c = [await rig.raw(answering(OK)) for _ in range(3)]
    sender = rig.sender(max_connections=2)
    for server in (a, b, a, c):
        assert (await send(sender, server.url())).http_status == 200
    await eventually(lambda: 0 in b.ended)  # b was idle longest: closed for c
    assert a.ended == {}
    assert (await send(sender, a.url())).http_status == 200
    assert (a.accepted, b.accepted, c.accepted) == (1, 1, 1)


async def test_an_idle_connection_expires_after_the_keepalive(rig: Rig) -> None:
    server = await rig.raw(answering(OK))
    pool = rig.pool(keepalive=0.2)
    first = await exchange(pool, server.url())
    assert await exchange(pool, server.url()) is first
    await asyncio.sleep(0.3)
    assert await exchange(pool, server.url()) is not first
    assert server.accepted == 2
    await eventually(lambda: 0 in server.ended)  # the expired one was closed


# --- 9. TLS ----------------------------------------------------------------------


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


def trust(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes ``ca`` the trust store of TLS contexts made from now on."""
    path = tmp_path / f"ca-{id(ca)}.pem"
    ca.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


async def test_delivery_over_tls_to_a_trusted_certificate(
    rig: Rig, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await rig.web(server_context(ca.issue_cert("127.0.0.1")))
    trust(ca, tmp_path, monkeypatch)
    sender = rig.sender(allow_insecure=False)  # a hook at 127.0.0.1 needs insecure...
    assert (await send(sender, server.url())).error.startswith("callback host 127.0.0.1 is")
    sender = rig.sender()  # ...which does not turn certificate checks off
    for n in range(3):
        answer = await send(sender, server.url(f"/hook?n={n}"), method="POST", body=b"{}")
        assert answer == Answer(200, answer.latency_ms, ""), answer
    assert [(r.secure, r.path_qs) for r in server.requests] == [
        (True, f"/hook?n={n}") for n in range(3)
    ]
    assert server.connections == 1


@pytest.mark.parametrize("case", ["another-ca", "no-trust-configured", "name-mismatch"])
async def test_delivery_over_tls_to_an_untrusted_certificate_fails(
    rig: Rig, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    if case == "another-ca":
        cert = trustme.CA().issue_cert("127.0.0.1")
    elif case == "name-mismatch":
        cert = ca.issue_cert("hooks.example.test")
    else:
        cert = ca.issue_cert("127.0.0.1")
    server = await rig.web(server_context(cert))
    if case == "no-trust-configured":
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    else:
        trust(ca, tmp_path, monkeypatch)
    answer = await send(rig.sender(), server.url(), method="POST", body=b"{}")
    assert answer.http_status == 0
    assert answer.error.startswith("cannot connect:"), answer
    assert "certificate verify failed" in answer.error, answer
    assert server.requests == []


# --- The SSRF guard --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (
            "http://127.0.0.1:{port}/hook",
            "plain http callbacks are refused (HOOKKEEPER_ALLOW_INSECURE_CALLBACKS is off)",
        ),
        ("https://127.0.0.1:{port}/hook", "callback host 127.0.0.1 is a loopback address"),
        (
            "https://[::ffff:127.0.0.1]:{port}/hook",
            "callback host ::ffff:127.0.0.1 is a loopback address",
        ),
        (
            "https://0.0.0.0:{port}/hook",
            "callback host 0.0.0.0 is a private address",  # 0.0.0.0/8, "this network"
        ),
        ("https://localhost:{port}/hook", "callback host localhost resolves to a loopback address"),
        (
            "https://LocalHost.:{port}/hook",
            "callback host localhost resolves to a loopback address",
        ),
        ("https://127.1:{port}/hook", "callback host 127.1 resolves to a loopback address"),
        (
            "https://2130706433:{port}/hook",
            "callback host 2130706433 resolves to a loopback address",
        ),
    ],
)
async def test_the_guard_refuses_loopback_without_connecting(
    rig: Rig, url: str, error: str
) -> None:
    server = await rig.raw(answering(OK))
    answer = await send(rig.sender(allow_insecure=False), url.format(port=server.port))
    assert (answer.http_status, answer.error) == (0, error)
    await asyncio.sleep(0.05)
    assert server.accepted == 0
    # The control: allowed, the same host name does reach the server.
    allowed = await send(rig.sender(), f"http://localhost:{server.port}/hook")
    assert allowed.http_status == 200, allowed
    assert server.accepted == 1


async def test_the_guarded_pool_checks_the_resolved_addresses(rig: Rig) -> None:
    """DNS rebinding: a public-looking name that resolves to loopback."""
    server = await rig.raw(answering(OK))

    async def rebinding(host: str, port: int) -> list[str]:
        return ["127.0.0.1", "::ffff:127.0.0.1"]

    target = target_of(f"http://hooks.example.test:{server.port}/hook")
    with pytest.raises(ForbiddenAddress) as refused:
        await rig.pool(guarded=True, resolve=rebinding).acquire(target)
    assert str(refused.value) == "callback host hooks.example.test resolves to a loopback address"
    await asyncio.sleep(0.05)
    assert server.accepted == 0

    async def mixed(host: str, port: int) -> list[str]:
        return ["10.1.2.3", "8.8.8.8", "::ffff:169.254.169.254", "fe80::1%lo", "2606:4700::1"]

    allowed = await rig.pool(guarded=True, resolve=mixed).addresses(target)
    assert allowed == ["8.8.8.8", "2606:4700::1"]
    # Unguarded (HOOKKEEPER_ALLOW_INSECURE_CALLBACKS), the same name connects.
    url = f"http://hooks.example.test:{server.port}/hook"
    conn = await exchange(rig.pool(resolve=rebinding), url)
    assert conn.status == 200
    assert server.accepted == 1


# --- 10. Error texts ---------------------------------------------------------------

SECRET_USER_INFO = "partner:pw-s3cr3t"
SECRET_QUERY = "token=tok-s3cr3t"


async def _close_at_once(peer: Peer) -> None:
    await peer.request()
    peer.close()


async def _greet_in_plaintext(peer: Peer) -> None:
    peer.send(OK)
    await peer.until_closed()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("refused", "cannot connect: "),
        ("timeout", "no answer within 0.3s"),
        ("malformed", "invalid HTTP answer: "),
        ("closed", "the callback closed the connection"),
        ("not-2xx", "the callback answered HTTP 404"),
        ("tls-to-plaintext", "cannot connect: "),
        ("header", HEADER_REFUSED),
        ("bad-port", "the callback URL is malformed: "),
        ("guarded", "callback host localhost resolves to a loopback address"),
    ],
)
async def test_error_texts_never_show_the_urls_credentials(
    rig: Rig, case: str, expected: str
) -> None:
    scripts: dict[str, Script] = {
        "timeout": never_answering,
        "malformed": answering(b"HTTP/1.1 2x0 OK\r\n\r\n"),
        "closed": _close_at_once,
        "not-2xx": answering(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        "tls-to-plaintext": _greet_in_plaintext,
        "guarded": answering(OK),
    }
    port = (await rig.raw(scripts[case])).port if case in scripts else free_port()
    scheme = "https" if case in ("tls-to-plaintext", "guarded") else "http"
    host = "localhost" if case == "guarded" else "127.0.0.1"
    if case == "bad-port":
        port = 99999
    url = f"{scheme}://{SECRET_USER_INFO}@{host}:{port}/hook?{SECRET_QUERY}#frag-s3cr3t"
    answer = await rig.sender(allow_insecure=case != "guarded").request(
        "POST",
        url,
        headers={"api-key": "k\r\nX: y"} if case == "header" else {},
        body=b"{}",
        # Short only where the timeout is the case: a failure must not turn
        # into a timeout on a loaded machine (a TLS handshake took 0.45 s).
        timeout_seconds=0.3 if case == "timeout" else 5,
    )
    assert answer.error.startswith(expected), answer
    for secret in ("s3cr3t", "partner", "token"):
        assert secret not in answer.error, answer


# --- Freeing the pool's places: bugs these tests found, now fixed ---------------


async def test_a_connect_that_times_out_frees_its_slot_for_the_next_request(rig: Rig) -> None:
    server = await rig.raw(answering(OK))
    sender = rig.sender(max_connections=1)

    async def queued() -> Answer:
        await asyncio.sleep(0.05)  # behind the first, which holds the only slot
        return await send(sender, server.url(), seconds=1.0)

    with stalled_port() as port:
        await require_stall(port)
        first, second = await asyncio.gather(
            send(sender, f"http://127.0.0.1:{port}/hook", seconds=0.3), queued()
        )
    assert first.error == "no answer within 0.3s"
    assert second.http_status == 200, second


async def test_a_failed_lookup_frees_its_slot_for_the_next_request(rig: Rig) -> None:
    server = await rig.raw(answering(OK))

    async def resolve(host: str, port: int) -> list[str]:
        if host == "unresolvable.example.test":
            await asyncio.sleep(0.05)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return ["127.0.0.1"]

    pool = rig.pool(limit=1, resolve=resolve)
    failing = asyncio.create_task(pool.acquire(target_of("http://unresolvable.example.test/")))
    await asyncio.sleep(0)
    assert pool.size == 1  # opening: the pool is full
    queued = asyncio.create_task(pool.acquire(target_of(server.url())))
    try:
        with pytest.raises(socket.gaierror):
            await failing
        done, _ = await asyncio.wait({queued}, timeout=1.0)
        assert queued in done, f"the queued request was never woken; pool size {pool.size}"
    finally:
        queued.cancel()
        await asyncio.gather(queued, return_exceptions=True)


async def test_a_wake_up_is_not_lost_when_the_woken_request_gives_up(rig: Rig) -> None:
    a, b = await rig.raw(answering(OK)), await rig.raw(answering(OK))
    pool = rig.pool(limit=1)
    target_a, target_b = target_of(a.url()), target_of(b.url())
    held = await asyncio.wait_for(pool.acquire(target_a), 2)
    await asyncio.wait_for(held.exchange(b"GET" + target_a.head + b"\r\n"), 2)
    giving_up = asyncio.create_task(pool.acquire(target_a))
    waiting = asyncio.create_task(pool.acquire(target_b))
    await asyncio.sleep(0.02)  # both queued behind the held connection
    try:
        pool.release(held, target_a.key)  # wakes giving_up...
        giving_up.cancel()  # ...whose deadline passes before it runs
        done, _ = await asyncio.wait({waiting}, timeout=1.0)
        assert waiting in done, "the other queued request was never woken"
    finally:
        for task in (giving_up, waiting):
            task.cancel()
        await asyncio.gather(giving_up, waiting, return_exceptions=True)


async def test_a_full_pool_never_holds_more_sockets_than_its_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every request to a new host evicts an idle connection; the evicted
    socket closes a loop iteration after abort(), and until then it still
    counts: the new connection waits for it rather than going over."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(answer)
                await writer.drain()
        writer.close()

    servers = [await asyncio.start_server(serve, "127.0.0.1", 0) for _ in range(10)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    made: weakref.WeakSet[Connection] = weakref.WeakSet()

    class Counted(Connection):
        """A pool connection, remembered to count the open ones."""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            made.add(self)
            super().connection_made(transport)

    monkeypatch.setattr(pool_module, "Connection", Counted)
    sender = Sender(allow_insecure=True, max_connections=2)
    peak = 0

    def open_sockets() -> int:
        return sum(1 for c in made if not c.closed)

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, open_sockets())
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    try:

        async def one_by_one(order: list[int]) -> list[int]:
            statuses = []
            for port in order:
                answer_ = await sender.request(
                    "GET", f"http://127.0.0.1:{port}/", headers={}, body=None, timeout_seconds=2
                )
                statuses.append(answer_.http_status)
            return statuses

        results = await asyncio.gather(one_by_one(ports * 2), one_by_one(ports[::-1] * 2))
    finally:
        watcher.cancel()
        await sender.close()
        for server in servers:
            server.close()
    assert list(results) == [[200] * 20, [200] * 20]
    assert 1 <= peak <= 2
