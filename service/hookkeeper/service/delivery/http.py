"""The outbound HTTP client of notifications, with the SSRF guard.

aiohttp connects only to the addresses its resolver returns, so filtering them
there checks exactly the addresses connected to, after DNS resolution, every
time a connection is opened: a name that later resolves to an internal
address (DNS rebinding) is refused as well. IP literals bypass resolvers in
aiohttp, so they are checked before the request. Redirects are not followed
(a 3xx counts as a failed attempt) and no proxy from the environment is used.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from hookkeeper.service import telemetry
from hookkeeper.service.app.sending import Answer
from hookkeeper.service.domain.addresses import forbidden_reason
from hookkeeper.service.domain.throttling import THROTTLE_STATUSES

USER_AGENT = "Hookkeeper-Notifications/1.0"
# What is read of an answer: enough to keep the connection reusable for
# small bodies; the content itself is never stored.
_MAX_ANSWER_BYTES = 64 * 1024


class ForbiddenAddress(OSError):
    """The callback host resolves only to addresses a callback may not reach."""


class GuardedResolver(AbstractResolver):
    """A resolver that drops loopback, private, link-local and metadata addresses."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The public addresses of ``host``; ForbiddenAddress when there are none."""
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if forbidden_reason(r["host"]) is None]
        if not allowed:
            reasons = sorted({forbidden_reason(r["host"]) or "" for r in results})
            raise ForbiddenAddress(
                f"callback host {host} resolves to {', '.join(reasons) or 'no address'}"
            )
        return allowed

    async def close(self) -> None:
        """Releases the inner resolver."""
        await self._inner.close()


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
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver: AbstractResolver = (
                DefaultResolver() if self._allow_insecure else GuardedResolver()
            )
            connector = aiohttp.TCPConnector(
                resolver=resolver, limit=self._max_connections, limit_per_host=0
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
                cookie_jar=aiohttp.DummyCookieJar(),
                # A client span per POST with W3C traceparent (none when off).
                trace_configs=telemetry.aiohttp_trace_configs() or None,
            )
        return self._session

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
            async with self._client().request(
                method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=_timeout(timeout_seconds),
            ) as response:
                await response.content.read(_MAX_ANSWER_BYTES)
                if not response.content.at_eof():
                    response.close()
                status = response.status
                retry_after = (
                    response.headers.get("Retry-After") if status in THROTTLE_STATUSES else None
                )
        except TimeoutError:
            return Answer(0, elapsed(), f"no answer within {timeout_seconds:g}s")
        except aiohttp.ClientConnectorError as error:
            cause = error.os_error
            if isinstance(cause, ForbiddenAddress):
                return Answer(0, elapsed(), str(cause))
            return Answer(0, elapsed(), f"cannot connect: {cause.strerror or cause}")
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as error:
            text = scrub_url(f"{type(error).__name__}: {error}", url)
            return Answer(0, elapsed(), text[:500])
        if 200 <= status < 300:
            return Answer(status, elapsed(), "")
        failure = f"the callback answered HTTP {status}"
        return Answer(status, elapsed(), failure, retry_after[:100] if retry_after else None)

    async def close(self) -> None:
        """Closes the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    """One (immutable) timeout per value: configurations share a handful."""
    return aiohttp.ClientTimeout(total=seconds)


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
