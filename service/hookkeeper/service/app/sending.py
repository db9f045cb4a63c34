"""What the delivery use cases need of an HTTP client (a port): send one
request, get an ``Answer``. ``delivery/http.py`` implements it (keep-alive
HTTP/1.1 on httptools) with the SSRF guard; the use cases never import it,
so ``delivery`` depends on ``app`` and not the other way round."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Answer:
    """The outcome of one request: the status (0 when none came), the latency
    and, for a failure, why."""

    http_status: int
    latency_ms: int
    error: str
    # The Retry-After header of a 429 or 503 answer, as sent.
    retry_after: str | None = None

    @property
    def succeeded(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.http_status < 300


class Sender(Protocol):
    """Sends notification requests."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout_seconds: float,
    ) -> Answer:
        """Makes one request and reports its outcome; never raises for
        network errors (they become an Answer with status 0)."""
