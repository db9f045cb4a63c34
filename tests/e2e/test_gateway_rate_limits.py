"""End to end: the gateway's rate limits, with real gateway processes.

- Per partner token, every mutation field of a request (aliases included)
  is one operation, a query one; over the limit: HTTP 429, ``Retry-After``
  and ``extensions.code`` ``RATE_LIMITED``, and nothing runs.
- Per client address, requests without a valid token.
- With ``HOOKKEEPER_RATE_LIMIT_STORAGE`` pointing at the machine's Redis,
  two gateways together hold one limit; an unreachable Redis is 503.

Limits per minute keep the counts exact however slowly the machine runs.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway_stack import Stack, start_stack
from tests.support.processes import free_port
from tests.support.redis import require_redis

pytestmark = pytest.mark.e2e

PROFILE = "{ notificationProfile { callbackConfigs { id } } }"
INPUT = (
    'input: {callbackUrl: "https://hooks.example.com/in", apiKey: "k", '
    'contactEmail: "ops@example.com"}'
)


def _creates(count: int) -> str:
    fields = " ".join(
        f"c{i}: createNotificationCallbackConfig({INPUT}) {{ secret }}" for i in range(count)
    )
    return f"mutation {{ {fields} }}"


def _limited(reply: httpx.Response) -> None:
    assert reply.status_code == 429, reply.text
    assert int(reply.headers["retry-after"]) >= 1
    body = reply.json()
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["RATE_LIMITED"]


def _configs(stack: Stack, token: str, url: str | None = None) -> Any:
    reply = stack.post(PROFILE, token, url=url)
    assert reply.status_code == 200, reply.text
    return len(reply.json()["data"]["notificationProfile"]["callbackConfigs"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A service and a gateway with small per-minute limits in memory."""
    running = start_stack(
        tmp_path_factory.mktemp("gateway-rate-limits"),
        HOOKKEEPER_GATEWAY_RATE_LIMIT="10/minute",
        HOOKKEEPER_GATEWAY_ANON_RATE_LIMIT="3/minute",
    )
    yield running
    running.stop()


def test_each_mutation_field_is_one_operation(stack: Stack) -> None:
    _, token = stack.partner("Busy Hotels")
    assert stack.post(_creates(8), token).status_code == 200  # 8 of 10
    _limited(stack.post(_creates(3), token))  # 11 > 10: refused, nothing runs
    assert _configs(stack, token) == 8  # 9 of 10
    assert _configs(stack, token) == 8  # 10 of 10
    _limited(stack.post(PROFILE, token))
    # Another partner has a budget of its own.
    _, other = stack.partner("Quiet Hotels")
    assert stack.post(_creates(2), other).status_code == 200
    assert _configs(stack, other) == 2


def test_requests_without_a_valid_token_are_limited_per_address(stack: Stack) -> None:
    _, token = stack.partner("Neighbour Hotels")
    assert _configs(stack, token) == 0  # known (cached) before the flood
    for wrong in (None, "hkp_" + "w" * 43, None):
        assert stack.post(PROFILE, wrong).status_code == 401
    for wrong in (None, "hkp_" + "w" * 43):
        _limited(stack.post(PROFILE, wrong))
    # The partner's own budget is untouched.
    assert _configs(stack, token) == 0


def test_two_gateways_share_the_limit_through_redis(tmp_path: Path) -> None:
    redis_url = require_redis()
    stack = start_stack(
        tmp_path,
        HOOKKEEPER_GATEWAY_RATE_LIMIT="10/minute",
        HOOKKEEPER_GATEWAY_ANON_RATE_LIMIT="4/minute",
        HOOKKEEPER_RATE_LIMIT_STORAGE=redis_url,
    )
    try:
        second = stack.start_gateway("gateway-2")
        urls = [stack.url, second]
        _, token = stack.partner(f"Shared Hotels {uuid.uuid4().hex[:6]}")
        # Every request comes from a random loopback address of this run's
        # own: other runs on this machine share the Redis, and an uncached
        # token is checked against its address's unauthenticated budget.
        octets = (random.randrange(1, 255), random.randrange(256), random.randrange(1, 255))
        address = "127.{}.{}.{}".format(*octets)
        transport = httpx.HTTPTransport(local_address=address)
        with httpx.Client(transport=transport, timeout=20) as client:
            body = {"query": PROFILE}
            partner = {"Authorization": f"Bearer {token}"}
            answered = [
                client.post(urls[n % 2], json=body, headers=partner).status_code for n in range(10)
            ]
            assert answered == [200] * 10
            for url in urls:
                _limited(client.post(url, json=body, headers=partner))
            # Unauthenticated requests from one address: one budget for both.
            statuses = [client.post(urls[n % 2], json=body).status_code for n in range(4)]
            assert statuses == [401] * 4
            for url in urls:
                _limited(client.post(url, json=body))
    finally:
        stack.stop()


def test_an_unreachable_rate_limit_store_is_unavailable(tmp_path: Path) -> None:
    stack = start_stack(
        tmp_path, HOOKKEEPER_RATE_LIMIT_STORAGE=f"redis://127.0.0.1:{free_port()}/0"
    )
    try:
        _, token = stack.partner("Stranded Hotels")
        for sent in (token, None, token):
            reply = stack.post(PROFILE, sent)
            assert reply.status_code == 503, reply.text
            assert int(reply.headers["retry-after"]) >= 1
            assert reply.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
    finally:
        stack.stop()
    log = stack.gateways[0].output()
    assert log.count("rate-limit storage unreachable") == 1, log
    assert "Traceback" not in log, log
