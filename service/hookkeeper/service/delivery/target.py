"""Where a callback URL points, parsed once: the pool key, what to connect
to and the request line and headers that do not change between attempts.

A dispatcher's traffic covers a few thousand callback URLs, so each is parsed
once (``target_of`` is cached) instead of once per attempt.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, unquote, urlsplit

# Characters left as they are in a request target: RFC 3986's reserved and
# unreserved ones, and "%" so that escapes already in the URL are kept.
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_URLS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class Target:
    """One callback URL as the HTTP client uses it."""

    # Connections are pooled per (scheme, host, port).
    key: tuple[str, str, int]
    tls: bool
    # ASCII host to resolve, connect to and name in TLS (IDNA for names).
    host: str
    port: int
    # The host is an IP address: no DNS lookup.
    literal: bool
    # " <request-target> HTTP/1.1\r\nHost: ...\r\n" and, for a URL with user
    # info, its Basic Authorization: what follows the method.
    head: bytes


class BadTarget(ValueError):
    """The URL cannot be requested (its scheme, host or port)."""


@functools.lru_cache(maxsize=_URLS_KEPT)
def target_of(url: str) -> Target:
    """The parsed ``url``; BadTarget when it is not an http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port
    except ValueError as error:  # a port out of range or not a number
        raise BadTarget(f"the callback URL is malformed: {error}") from None
    if scheme not in _DEFAULT_PORTS:
        raise BadTarget(f"the callback URL's scheme {scheme!r} is not http or https")
    hostname = (parts.hostname or "").rstrip(".")
    if not hostname:
        raise BadTarget("the callback URL has no host")
    literal = _is_ip(hostname)
    host = hostname if literal else _ascii_host(hostname)
    port = port or _DEFAULT_PORTS[scheme]
    return Target(
        key=(scheme, host, port),
        tls=scheme == "https",
        host=host,
        port=port,
        literal=literal,
        head=_head(parts, _host_header(host, port, scheme)),
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _ascii_host(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise BadTarget(f"the callback host {host!r} is not a valid host name") from None


def _host_header(host: str, port: int, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"


def _head(parts: SplitResult, host_header: str) -> bytes:
    request_target = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        request_target += "?" + quote(parts.query, safe=_QUERY_SAFE)
    head = f" {request_target} HTTP/1.1\r\nHost: {host_header}\r\n".encode("ascii")
    if parts.username is not None:
        # As aiohttp and curl do: user info in the URL is sent as Basic auth.
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        head += b"Authorization: Basic " + base64.b64encode(credentials) + b"\r\n"
    return head
