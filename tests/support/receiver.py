"""A real HTTP receiver for delivery tests (aiohttp, on a free port).

It checks what a partner would check, independently of the service's code:
the headers, the epoch-ms timestamp, and every Base64 HMAC-SHA256 in the
signature header recomputed here with hmac/hashlib against the secrets it is
told; a Standard Webhooks request is verified by the official
``standardwebhooks`` library, once per secret. It also counts, per
transactionId, how many requests are in flight at once, so a test can prove
no two dispatchers ever send the same attempt concurrently.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.processes import free_port


@dataclass
class Received:
    """One request as the receiver saw it, with its own verdicts."""

    method: str
    headers: dict[str, str]
    body: bytes
    arrival: float
    # For each signature in the header (in order): the index of the matching
    # secret among Receiver.secrets, or None.
    signature_matches: list[int | None] = field(default_factory=list)
    # Standard Webhooks: for each of Receiver.secrets, whether the official
    # `standardwebhooks` library accepted the request with that secret alone.
    standard_webhooks_verified: list[bool] = field(default_factory=list)

    @property
    def transaction_id(self) -> str:
        """The transactionId header."""
        return self.headers.get("transactionid", "")

    def envelope(self) -> dict[str, Any]:
        """The JSON body."""
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


# A status, or a status and extra answer headers (e.g. Retry-After).
Behaviour = Callable[[Received], Awaitable[int | tuple[int, dict[str, str]]]]


async def always_ok(_: Received) -> int:
    """Answers 200."""
    return 200


def signature_matches(
    header: str, timestamp: str, body: bytes, secrets: list[str]
) -> list[int | None]:
    """Recomputes each secret's signature and matches the header's values."""
    assert header.startswith("sha256="), header
    offered = header.removeprefix("sha256=").split(",")
    expected = [
        base64.b64encode(
            hmac.new(s.encode(), timestamp.encode() + b"." + body, hashlib.sha256).digest()
        ).decode()
        for s in secrets
    ]
    return [expected.index(o) if o in expected else None for o in offered]


def standard_webhooks_accepts(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    """Whether the reference library (PyPI ``standardwebhooks``) verifies the
    request with ``secret``, exactly as a partner would call it."""
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


class Receiver:
    """An aiohttp server that records and verifies every request."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.requests: list[Received] = []
        self.secrets: list[str] = []
        self.behaviour: Behaviour = always_ok
        self._inflight: Counter[str] = Counter()
        self.max_concurrent_per_transaction = 0
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        received = Received(request.method, headers, body, time.monotonic())
        if request.method == "POST" and "webhook-signature" in headers:
            received.standard_webhooks_verified = [
                standard_webhooks_accepts(secret, body, headers) for secret in self.secrets
            ]
        elif request.method == "POST":
            received.signature_matches = signature_matches(
                headers.get("x-eg-notification-signature-v2", "sha256="),
                headers.get("x-eg-notification-timestamp", ""),
                body,
                self.secrets,
            )
        self.requests.append(received)
        self._changed.set()
        tx = received.transaction_id
        self._inflight[tx] += 1
        self.max_concurrent_per_transaction = max(
            self.max_concurrent_per_transaction, self._inflight[tx]
        )
        try:
            answer = await self.behaviour(received)
        finally:
            self._inflight[tx] -= 1
        status, extra = answer if isinstance(answer, tuple) else (answer, {})
        return web.Response(status=status, text="ok", headers=extra)

    async def start(self) -> Receiver:
        """Listens on 127.0.0.1:port."""
        app = web.Application()
        app.router.add_route("*", "/hook", self._handle)
        # A short shutdown: a handler left hanging on purpose must not hold up the test.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        """Stops listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    def posts(self) -> list[Received]:
        """The POSTs received so far (notifications, not connectivity GETs)."""
        return [r for r in self.requests if r.method == "POST"]

    async def wait_until(self, predicate: Callable[[], bool], within: float = 20) -> None:
        """Waits up to ``within`` seconds until ``predicate()`` holds."""
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; received {len(self.requests)} requests")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))
