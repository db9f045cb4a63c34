"""The machine's Redis for tests that share state between processes (the
gateway's rate limits): its URL, and whether it answers.

HOOKKEEPER_TEST_REDIS_URL overrides the default ``redis://127.0.0.1:6379/0``.
When Redis is unreachable its cases skip with the reason, except under
CI=true, where they fail (``tests.support.ci``).
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from tests.support.ci import skip_or_fail

REDIS_URL = os.environ.get("HOOKKEEPER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_unavailable(url: str = REDIS_URL) -> str | None:
    """None when Redis at ``url`` answers PING, else the reason."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            if parts.password:
                sock.sendall(f"AUTH {parts.password}\r\n".encode())
                sock.recv(64)
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except OSError as error:
        return f"Redis not reachable at {host}:{port}: {error.__class__.__name__}"
    if not answer.startswith(b"+PONG"):
        return f"Redis at {host}:{port} did not answer PING: {answer[:40]!r}"
    return None


def require_redis() -> str:
    """The Redis URL; skips (or, under CI, fails) when Redis is unreachable."""
    reason = redis_unavailable()
    if reason is not None:
        skip_or_fail(reason, "Redis")
    return REDIS_URL
