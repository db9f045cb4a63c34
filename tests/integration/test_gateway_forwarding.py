"""What the gateway sends with each RPC: its service token (never the
partner's), the request's remaining deadline, the caller's W3C trace context,
and how often it asks who a token belongs to (the partner cache).

The far end is a real gRPC server whose servicers record what arrives, since
only the receiving side can see the metadata and deadline of a call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest

from hookkeeper.gateway import auth, rpc
from hookkeeper.gateway.app import GatewayConfig, create_app
from hookkeeper.gateway.rate_limits import RateLimits, RateLimitSettings
from hookkeeper.gateway.schema import build_schema
from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.notifications.v1 import partner_pb2 as pb
from hookkeeper.notifications.v1 import partner_pb2_grpc as pb_grpc

SERVICE_TOKEN = "gateway-service-token-0123456789"
PARTNER_TOKEN = "hkp_partner-token-for-forwarding-tests-0000000"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
PROFILE = {"query": "{ notificationProfile { callbackConfigs { id } } }"}
CEILING = 5.0


@dataclass
class Seen:
    """One call as the server saw it."""

    method: str
    metadata: dict[str, str]
    time_remaining: float | None


@dataclass
class Recorder:
    """Everything the fake service received."""

    calls: list[Seen] = field(default_factory=list)

    def record(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        metadata = {k: str(v) for k, v in context.invocation_metadata() or ()}
        self.calls.append(Seen(method, metadata, context.time_remaining()))


class Partners(pb_grpc.PartnerServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def AuthenticatePartner(
        self, request: pb.AuthenticatePartnerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AuthenticatePartnerResponse:
        self.recorder.record("AuthenticatePartner", context)
        if request.token != PARTNER_TOKEN:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such token")
        return pb.AuthenticatePartnerResponse(partner=pb.Partner(name="partners/p-1"))


class Configs(cc_grpc.CallbackConfigServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def ListCallbackConfigs(
        self, request: cc.ListCallbackConfigsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> cc.ListCallbackConfigsResponse:
        self.recorder.record("ListCallbackConfigs", context)
        assert request.parent == "partners/p-1"
        return cc.ListCallbackConfigsResponse()


@dataclass
class Harness:
    recorder: Recorder
    target: str

    @asynccontextmanager
    async def client(
        self, cache_seconds: float = 30, limits: RateLimits | None = None
    ) -> AsyncIterator[httpx.AsyncClient]:
        """An HTTP client of a fresh in-process gateway calling this server."""
        stubs = rpc.Stubs(self.target)
        cache = auth.PartnerCache(cache_seconds, 64 * 1024)
        cache.reset(enabled=True)  # as if the revocation feed were live
        app = create_app(
            build_schema(),
            stubs,
            GatewayConfig(SERVICE_TOKEN, max_body_bytes=1 << 20, request_timeout_seconds=CEILING),
            cache,
            limits=limits,
        )
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://gateway",
                headers={"Authorization": f"Bearer {PARTNER_TOKEN}"},
            ) as client:
                yield client
        finally:
            await stubs.close()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    recorder = Recorder()
    server = grpc.aio.server()
    # WatchTokenRevocations stays unimplemented: the cache is switched on by hand.
    pb_grpc.add_PartnerServiceServicer_to_server(Partners(recorder), server)  # type: ignore[abstract]
    # Only ListCallbackConfigs is called here; the other RPCs stay unimplemented.
    cc_grpc.add_CallbackConfigServiceServicer_to_server(Configs(recorder), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield Harness(recorder, f"127.0.0.1:{port}")
    await server.stop(0)


async def test_service_token_deadline_and_trace_context_are_forwarded(harness: Harness) -> None:
    async with harness.client() as client:
        reply = await client.post(
            "/graphql",
            json=PROFILE,
            headers={"traceparent": TRACEPARENT, "tracestate": "vendor=1", "Request-Timeout": "2"},
        )
    assert reply.json() == {"data": {"notificationProfile": {"callbackConfigs": []}}}
    assert [c.method for c in harness.recorder.calls] == [
        "AuthenticatePartner",
        "ListCallbackConfigs",
    ]
    for call in harness.recorder.calls:
        assert call.metadata["authorization"] == f"Bearer {SERVICE_TOKEN}"
        assert PARTNER_TOKEN not in call.metadata["authorization"]
        assert call.metadata["traceparent"] == TRACEPARENT
        assert call.metadata["tracestate"] == "vendor=1"
        assert call.time_remaining is not None
        assert 0 < call.time_remaining <= 2


async def test_without_headers_the_gateway_ceiling_applies(harness: Harness) -> None:
    async with harness.client() as client:
        await client.post("/graphql", json=PROFILE, headers={"Request-Timeout": "600"})
    for call in harness.recorder.calls:
        assert "traceparent" not in call.metadata
        assert call.time_remaining is not None
        assert 2 < call.time_remaining <= CEILING


async def test_partner_answers_are_cached_briefly(harness: Harness) -> None:
    async with harness.client(cache_seconds=30) as client:
        for _ in range(3):
            assert (await client.post("/graphql", json=PROFILE)).status_code == 200
    methods = [c.method for c in harness.recorder.calls]
    assert methods.count("AuthenticatePartner") == 1
    assert methods.count("ListCallbackConfigs") == 3

    harness.recorder.calls.clear()
    async with harness.client(cache_seconds=0) as client:
        for _ in range(2):
            assert (await client.post("/graphql", json=PROFILE)).status_code == 200
    assert [c.method for c in harness.recorder.calls].count("AuthenticatePartner") == 2


async def test_refused_tokens_are_not_cached(harness: Harness) -> None:
    async with harness.client() as client:
        for _ in range(2):
            reply = await client.post(
                "/graphql", json=PROFILE, headers={"Authorization": "Bearer hkp_wrong"}
            )
            assert reply.status_code == 401
    assert [c.method for c in harness.recorder.calls] == ["AuthenticatePartner"] * 2


async def test_unauthenticated_requests_are_limited_before_any_rpc(harness: Harness) -> None:
    limits = RateLimits(RateLimitSettings("100/minute", "2/minute", "memory://"))
    wrong = {"Authorization": "Bearer hkp_wrong"}
    async with harness.client(limits=limits) as client:
        for _ in range(2):
            assert (await client.post("/graphql", json=PROFILE, headers=wrong)).status_code == 401
        assert [c.method for c in harness.recorder.calls] == ["AuthenticatePartner"] * 2
        for headers in (wrong, {"Authorization": ""}):
            reply = await client.post("/graphql", json=PROFILE, headers=headers)
            assert reply.status_code == 429
            assert int(reply.headers["retry-after"]) >= 1
            assert reply.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        # The refused requests cost no RPC (nor a read of their bodies).
        assert [c.method for c in harness.recorder.calls] == ["AuthenticatePartner"] * 2
