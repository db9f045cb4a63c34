"""The outbound HTTP client of notifications, with the SSRF guard.

Requests go out on ``pool.Pool``'s keep-alive connections (``connection``:
HTTP/1.1 parsed by httptools). The guard is in the pool: it connects only to
the addresses a callback may reach, checked every time a connection opens.
IP literals are checked here, before any connection. Redirects are not
followed (a 3xx counts as a failed attempt) and no proxy from the environment
is used. docs/libraries.md says why this client rather than aiohttp's: a
quarter of the CPU per request, on the one request shape delivery makes.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import yarl

from hookkeeper.service import telemetry
from hookkeeper.service.app.sending import Answer
from hookkeeper.service.delivery.connection import Connection, ConnectionLost
from hookkeeper.service.delivery.pool import ForbiddenAddress, Pool
from hookkeeper.service.delivery.target import BadTarget, Target, target_of
from hookkeeper.service.domain.addresses import forbidden_reason
from hookkeeper.service.domain.throttling import THROTTLE_STATUSES

__all__ = ["ForbiddenAddress", "Sender", "refusal", "scrub_url"]

USER_AGENT = "Hookkeeper-Notifications/1.0"
# What is read of an answer: enough to keep the connection reusable for
# small bodies; the content itself is never stored.
_MAX_ANSWER_BYTES = 64 * 1024
_AGENT_LINE = f"User-Agent: {USER_AGENT}\r\n".encode()


# Pure functions of the URL, asked once per attempt: a few thousand callback
# URLs cover the dispatcher's traffic, so each is parsed once.
@functools.lru_cache(maxsize=4096)
def refusal(url: str, *, allow_insecure: bool) -> str | None:
    """Why ``url`` may not be contacted before any DNS lookup, or None."""
    parts = urlsplit(url)
    if allow_insecure:
        return None
    if parts.scheme.lower() != "https":
        return "plain http callbacks are refused (HOOKKEEPER_ALLOW_INSECURE_CALLBACKS is off)"
    host = (parts.hostname or "").rstrip(".")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return None if host else "the callback URL has no host"
    reason = forbidden_reason(literal)
    return f"callback host {host} is {reason}" if reason else None


class Sender:
    """Sends notification requests (``app.sending.Sender``); one shared
    connection pool per process."""

    def __init__(self, *, allow_insecure: bool, max_connections: int = 100) -> None:
        self._allow_insecure = allow_insecure
        self._pool = Pool(
            limit=max_connections, guarded=not allow_insecure, max_body=_MAX_ANSWER_BYTES
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout_seconds: float,
    ) -> Answer:
        """Makes one request and reports its outcome; never raises for network errors."""
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        refused = refusal(url, allow_insecure=self._allow_insecure)
        if refused:
            return Answer(0, 0, refused)
        try:
            target = target_of(url)
            fields = _header_lines(headers)
        except (BadTarget, ValueError) as error:
            return Answer(0, 0, scrub_url(str(error), url)[:500])
        try:
            # A client span with the W3C traceparent when tracing is on.
            with telemetry.client_span(method, url) as span:
                if span.headers:
                    fields += _header_lines(span.headers)
                request = _request_bytes(method, target, fields, body)
                status, retry_after = await self._exchange(target, request, timeout_seconds)
                span.answered(status)
        except TimeoutError:
            return Answer(0, elapsed(), f"no answer within {timeout_seconds:g}s")
        except ForbiddenAddress as error:
            return Answer(0, elapsed(), str(error))
        except _CannotConnect as error:  # DNS, refused, unreachable, TLS
            return Answer(0, elapsed(), _failure(error.cause, url, "cannot connect: "))
        except OSError as error:  # lost, reset or malformed answers
            return Answer(0, elapsed(), _failure(error, url))
        if 200 <= status < 300:
            return Answer(status, elapsed(), "")
        failure = f"the callback answered HTTP {status}"
        if retry_after and status in THROTTLE_STATUSES:
            return Answer(status, elapsed(), failure, retry_after.decode("latin-1")[:100])
        return Answer(status, elapsed(), failure)

    async def _exchange(
        self, target: Target, request: bytes, seconds: float
    ) -> tuple[int, bytes | None]:
        """Sends on a pooled connection; TimeoutError once ``seconds``
        have passed, connecting included. A reused connection that closes
        before any byte of the answer was most likely closed idle by the
        server as the request left: sent once more, on a new connection."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        for _ in range(2):
            conn = self._pool.take_idle(target.key) or await self._connect(target, deadline)
            # A timer on the answer rather than asyncio.timeout: the same
            # deadline for a fraction of the cost, on every attempt.
            timer = loop.call_at(deadline, conn.expire)
            try:
                await conn.exchange(request)
            except ConnectionLost:
                self._pool.discard(conn)
                if conn.reused and not conn.received:
                    continue
                raise
            except BaseException:
                self._pool.discard(conn)  # cut short: the answer may still be coming
                raise
            finally:
                timer.cancel()
            self._pool.release(conn, target.key)
            return conn.status, conn.retry_after
        raise ConnectionLost("the callback closed the connection")

    async def _connect(self, target: Target, deadline: float) -> Connection:
        """A new (or freed) connection before ``deadline``."""
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(self._pool.acquire(target), max(remaining, 0))
        except (TimeoutError, ForbiddenAddress):
            raise
        except OSError as error:
            raise _CannotConnect(error) from None

    async def close(self) -> None:
        """Closes the connection pool."""
        await self._pool.close()


class _CannotConnect(Exception):
    """No connection could be opened (``cause`` says why)."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _header_lines(headers: Mapping[str, str]) -> str:
    """``Name: value\\r\\n`` for each header; ValueError for one that could
    break out of its line (a partner's API key goes in a value)."""
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    count = len(headers)
    if lines.count("\n") != count or lines.count("\r") != count or "\0" in lines:
        raise ValueError("a header holds a line break or NUL: the request cannot be sent")
    if ":" in "".join(headers):
        raise ValueError("a header name holds a colon: the request cannot be sent")
    return lines


def _request_bytes(method: str, target: Target, fields: str, body: bytes | None) -> bytes:
    """The whole request, head and body."""
    start = (method.encode("ascii"), target.head, _AGENT_LINE, fields.encode())
    if body is None:
        return b"".join((*start, b"\r\n"))
    return b"".join((*start, b"Content-Length: %d\r\n\r\n" % len(body), body))


def _failure(error: OSError, url: str, prefix: str = "") -> str:
    reason = error.strerror or str(error) or type(error).__name__
    return scrub_url(f"{prefix}{reason}", url)[:500]


def scrub_url(text: str, url: str) -> str:
    """``text`` with the callback URL shown without user info, query or
    fragment: a URL may carry the partner's credentials, and attempt errors
    are shown to partners and operators."""
    try:
        parsed = yarl.URL(url)
        safe = str(parsed.with_user(None).with_query(None).with_fragment(None))
        forms = {url, str(parsed), parsed.human_repr()}
    except (ValueError, TypeError):
        return text.replace(url, "<callback URL>")
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, safe)
    return text
