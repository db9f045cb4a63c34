"""End to end: the gateway's memory stays flat under a stream of large,
unique requests, with and without a partner token.

Each request is ``{"query": "{ __typename } #<n><1.9 MB of padding>"}``: a
distinct document every time, so any cache keyed by the query text, or any
parsing before authentication, would show as growth. The gateway's resident
set size is read from /proc/<pid>/status while the requests go out (to
127.0.0.1 only, a fixed number of them).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_stack import Stack, start_stack

pytestmark = pytest.mark.e2e

REQUESTS = 1_000
PADDING = b"x" * (1_900_000)
LIMIT_MIB = 50.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A service and a gateway (rate limits out of the way: this is about memory)."""
    running = start_stack(tmp_path_factory.mktemp("gateway-memory"))
    yield running
    running.stop()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


class _Sampler:
    """Samples a process's RSS every 50 ms in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = _rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _rss_mib(self.pid))

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _flood(stack: Stack, token: str | None, first: int, padding: bytes = PADDING) -> dict[int, int]:
    """REQUESTS large unique POSTs; how many got each status."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=30) as client:
        for n in range(first, first + REQUESTS):
            body = b'{"query": "{ __typename } #' + str(n).encode() + padding + b'"}'
            status = client.post(stack.url, content=body, headers=headers).status_code
            statuses[status] = statuses.get(status, 0) + 1
    return statuses


def _growth(
    stack: Stack, token: str | None, first: int, padding: bytes = PADDING
) -> tuple[float, float, dict[int, int]]:
    pid = stack.gateways[0].popen.pid
    before = _rss_mib(pid)
    with _Sampler(pid) as sampler:
        statuses = _flood(stack, token, first, padding)
    after = _rss_mib(pid)
    print(
        f"\ngateway RSS {'with' if token else 'without'} a token, "
        f"{len(padding)} bytes of padding: "
        f"{before:.1f} MiB before, {sampler.peak:.1f} MiB peak, {after:.1f} MiB after "
        f"{REQUESTS} requests (growth {after - before:+.1f} MiB); statuses {statuses}"
    )
    return after - before, sampler.peak - before, statuses


def test_memory_stays_flat_with_and_without_a_token(stack: Stack) -> None:
    _, token = stack.partner("Memory Hotels")
    # Warm up: first requests allocate the interpreter's working set.
    _flood_few = [stack.post("{ __typename }", token) for _ in range(20)]
    assert all(r.status_code == 200 for r in _flood_few)

    growth, peak, statuses = _growth(stack, None, 0)
    assert statuses == {401: REQUESTS}
    assert growth < LIMIT_MIB
    assert peak < LIMIT_MIB

    growth, peak, statuses = _growth(stack, token, REQUESTS)
    # Refused as too large a document, after authentication, before parsing.
    assert statuses == {400: REQUESTS}
    assert growth < LIMIT_MIB
    assert peak < LIMIT_MIB


def test_unique_documents_small_enough_to_cache_stay_within_the_cache_budget(
    stack: Stack,
) -> None:
    _, token = stack.partner("Cache Hotels")
    # 15 KB each: under the 16 KiB caching threshold, so every one is parsed,
    # validated, run and cached; the cache's byte budget must evict.
    growth, peak, statuses = _growth(stack, token, 10 * REQUESTS, b"y" * 15_000)
    assert statuses == {200: REQUESTS}
    assert growth < LIMIT_MIB
    assert peak < LIMIT_MIB
