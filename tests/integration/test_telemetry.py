"""Traces, metrics and logs with the SDK's in-memory exporters, through the
in-process gRPC server over a real channel, on both databases."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from hookkeeper.gateway import auth as gateway_auth
from hookkeeper.gateway import rpc
from hookkeeper.gateway.app import GatewayConfig, create_app
from hookkeeper.gateway.schema import build_schema
from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.notifications.v1 import secret_rotation_pb2 as sr
from hookkeeper.notifications.v1 import secret_rotation_pb2_grpc as sr_grpc
from hookkeeper.service import telemetry
from hookkeeper.service.app.callback_configs import CallbackConfigs
from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.app.partners import Partners
from hookkeeper.service.delivery import runtime as delivery_runtime
from hookkeeper.service.domain.callback_config import ConfigFields
from hookkeeper.service.gauge_sampler import GaugeSampler
from hookkeeper.service.mail.smtp import SmtpTransport, SmtpUrl
from hookkeeper.service.mail.worker import ExpiryMailer
from hookkeeper.service.server import start_server
from hookkeeper.service.settings import Settings
from tests.support.clock import FakeClock
from tests.support.receiver import Receiver
from tests.support.smtp import smtp_server

TOKEN = "telemetry-test-token-4f9a1c2e7b"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
API_KEY = "partner-api-key-8d3e5f7a9b1c"


@dataclass
class Captured:
    """What telemetry recorded during a test."""

    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    logs: io.StringIO

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metric_points(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        data = self.metrics.get_metrics_data()
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = getattr(point, "count", None)
                        found.setdefault(metric.name, []).append(
                            (dict(point.attributes or {}), value)
                        )
        return found


@pytest.fixture
def captured(app_context: AppContext) -> Iterator[Captured]:
    """Telemetry on, into memory; logs as JSON into a buffer at DEBUG."""
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    assert telemetry.configure(
        env={}, span_exporter=spans, metric_reader=reader, install_global=False
    )
    telemetry.instrument_engine(app_context.database.engine.sync_engine)
    logs = io.StringIO()
    handler = telemetry.log_handler(logs)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield Captured(spans, reader, logs)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        telemetry.shutdown()


@pytest.fixture
async def channel(app_context: AppContext, captured: Captured) -> AsyncIterator[grpc.aio.Channel]:
    """A traced client channel to a traced in-process server."""
    running = await start_server(app_context, "127.0.0.1:0", f"tests={TOKEN}")
    address = f"127.0.0.1:{running.port}"
    async with grpc.aio.insecure_channel(
        address, interceptors=telemetry.client_interceptors()
    ) as chan:
        yield chan
    await running.stop(0)


def new_config() -> cc.CallbackConfig:
    return cc.CallbackConfig(
        callback_url="https://hooks.example.com/in",
        api_key=API_KEY,
        contact_email="ops@example.com",
    )


async def test_one_trace_from_the_caller_through_the_rpc_to_the_queries(
    channel: grpc.aio.Channel, captured: Captured
) -> None:
    provider = telemetry.tracer_provider()
    assert provider is not None
    stub = cc_grpc.CallbackConfigServiceStub(channel)
    with provider.get_tracer("test").start_as_current_span("caller") as caller:
        await stub.CreateCallbackConfig(
            cc.CreateCallbackConfigRequest(parent="partners/acme", callback_config=new_config()),
            metadata=AUTH,
        )
    trace_id = caller.get_span_context().trace_id
    spans = captured.finished()
    in_trace = [s for s in spans if s.context is not None and s.context.trace_id == trace_id]
    server = [s for s in in_trace if s.kind == SpanKind.SERVER]
    client = [s for s in in_trace if s.kind == SpanKind.CLIENT and s.name.endswith("Config")]
    assert len(server) == 1, [s.name for s in spans]
    assert (
        server[0].name == "/hookkeeper.notifications.v1.CallbackConfigService/CreateCallbackConfig"
    )
    # W3C trace context crossed the wire in the gRPC metadata: the server
    # span's parent is the client span, in the caller's trace.
    assert client and server[0].parent is not None
    client_context = client[0].context
    server_context = server[0].context
    assert client_context is not None and server_context is not None
    assert server[0].parent.span_id == client_context.span_id
    statements = [
        (s, str(s.attributes["db.statement"]))
        for s in in_trace
        if s.attributes and "db.statement" in s.attributes
    ]
    assert any("INSERT INTO callback_configs" in text for _, text in statements)
    queries = [s for s, _ in statements]
    server_id = server_context.span_id
    assert all(q.parent is not None and q.parent.span_id == server_id for q in queries)


async def test_rpc_latency_and_codes_are_measured(
    channel: grpc.aio.Channel, captured: Captured
) -> None:
    stub = cc_grpc.CallbackConfigServiceStub(channel)
    await stub.CreateCallbackConfig(
        cc.CreateCallbackConfigRequest(parent="partners/acme", callback_config=new_config()),
        metadata=AUTH,
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetCallbackConfig(
            cc.GetCallbackConfigRequest(
                name="partners/acme/callbackConfigs/00000000-0000-4000-8000-000000000000"
            ),
            metadata=AUTH,
        )
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetCallbackConfig(cc.GetCallbackConfigRequest(name="partners/acme/x"))
    # The server records a call after its status has gone out, so the client
    # can hear of the refusal before the server has counted it: wait for the
    # two Get calls' points (bounded) rather than read a moment too soon.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        points = captured.metric_points()["rpc.server.duration"]
        if sum(count for a, count in points if a["rpc.method"] == "GetCallbackConfig") >= 2:
            break
        if asyncio.get_running_loop().time() > deadline:
            break  # the assertions below say what is missing
        await asyncio.sleep(0.02)
    seen = {(a["rpc.method"], a["rpc.grpc.status_code"]): count for a, count in points}
    assert seen[("CreateCallbackConfig", grpc.StatusCode.OK.value[0])] == 1
    codes = {code for (method, code) in seen if method == "GetCallbackConfig"}
    assert codes == {grpc.StatusCode.NOT_FOUND.value[0], grpc.StatusCode.UNAUTHENTICATED.value[0]}
    assert all(
        a["rpc.service"] == "hookkeeper.notifications.v1.CallbackConfigService" for a, _ in points
    )


async def test_warnings_sent_and_secrets_expiring_are_measured(
    app_context: AppContext, clock: FakeClock, channel: grpc.aio.Channel, captured: Captured
) -> None:
    stub = cc_grpc.CallbackConfigServiceStub(channel)
    for _ in range(2):
        await stub.CreateCallbackConfig(
            cc.CreateCallbackConfigRequest(parent="partners/acme", callback_config=new_config()),
            metadata=AUTH,
        )
    clock.advance(timedelta(days=360))  # 5 days left: within 30 and 7, not 1
    with smtp_server() as smtp:
        mailer = ExpiryMailer(app_context, SmtpTransport(SmtpUrl.parse(smtp.url)), "hk@example.com")
        assert await mailer.run_once() == 2
    await GaugeSampler(app_context).sample()
    points = captured.metric_points()
    assert points["hookkeeper.expiry_warnings"] == [({"threshold_days": 7, "outcome": "sent"}, 2)]
    expiring = {a["within_days"]: v for a, v in points["hookkeeper.secrets.expiring"]}
    assert expiring == {30: 2, 7: 2, 1: 0}


async def test_delivery_instruments_record_outcome_and_event_type(captured: Captured) -> None:
    telemetry.record_delivery("delivered", "lodging.review.created", 0.25)
    telemetry.record_delivery("failed", "lodging.review.created", None)
    telemetry.set_delivery_queue(4, 12.5)
    points = captured.metric_points()
    counted = {a["outcome"]: v for a, v in points["hookkeeper.deliveries"]}
    assert counted == {"delivered": 1, "failed": 1}
    assert points["hookkeeper.delivery.duration"][0][1] == 1
    assert points["hookkeeper.delivery.queue.depth"] == [({}, 4)]
    assert points["hookkeeper.delivery.queue.oldest_age"] == [({}, 12.5)]


async def test_logs_are_json_with_the_trace_id(captured: Captured) -> None:
    provider = telemetry.tracer_provider()
    assert provider is not None
    with provider.get_tracer("test").start_as_current_span("work") as span:
        logging.getLogger("hookkeeper.test").info("inside a span")
    lines = [json.loads(line) for line in captured.logs.getvalue().splitlines()]
    mine = [line for line in lines if line["message"] == "inside a span"]
    assert mine[0]["level"] == "INFO"
    assert mine[0]["logger"] == "hookkeeper.test"
    assert mine[0]["trace_id"] == format(span.get_span_context().trace_id, "032x")


async def test_no_secret_api_key_or_token_in_logs_spans_or_metrics(
    app_context: AppContext, channel: grpc.aio.Channel, captured: Captured
) -> None:
    configs = cc_grpc.CallbackConfigServiceStub(channel)
    rotation = sr_grpc.SecretRotationServiceStub(channel)
    created = await configs.CreateCallbackConfig(
        cc.CreateCallbackConfigRequest(parent="partners/acme", callback_config=new_config()),
        metadata=AUTH,
    )
    name = created.callback_config.name
    refreshed = await rotation.RefreshSecret(
        sr.RefreshSecretRequest(name=name, keep_existing_secret_active=True), metadata=AUTH
    )
    signed = await rotation.SignNotification(
        sr.SignNotificationRequest(name=name, payload=b'{"event":"x"}'), metadata=AUTH
    )
    with pytest.raises(grpc.aio.AioRpcError):  # a wrong token is not logged either
        await configs.GetCallbackConfig(
            cc.GetCallbackConfigRequest(name=name),
            metadata=(("authorization", "Bearer wrong-token-value-5e6f7a8b"),),
        )
    # Rejected input echoes nothing sensitive in logs either.
    bad = cc.CallbackConfig(callback_url="ftp://x", api_key=API_KEY, contact_email="x")
    with pytest.raises(grpc.aio.AioRpcError):
        await configs.CreateCallbackConfig(
            cc.CreateCallbackConfigRequest(parent="partners/acme", callback_config=bad),
            metadata=AUTH,
        )
    assert signed.signature
    sensitive = [
        TOKEN,
        "wrong-token-value-5e6f7a8b",
        API_KEY,
        created.secret,
        refreshed.secret,
    ]
    spans = captured.finished()
    assert spans, "tracing recorded nothing: the test would prove nothing"
    span_text = "\n".join(s.to_json() for s in spans)
    data = captured.metrics.get_metrics_data()
    assert isinstance(data, MetricsData)
    metric_text = data.to_json()
    log_text = captured.logs.getvalue()
    assert log_text.strip(), "no log line was captured: the test would prove nothing"
    for value in sensitive:
        assert value not in span_text
        assert value not in metric_text
        assert value not in log_text


CREATE = """
mutation Create($input: CreateNotificationCallbackConfigInput!) {
  createNotificationCallbackConfig(input: $input) { callbackConfig { id } secret }
}
"""


async def test_one_trace_from_the_gateway_request_through_the_rpc_to_the_queries(
    app_context: AppContext, captured: Captured
) -> None:
    issued = await Partners(app_context).create("Trace Hotels")
    running = await start_server(app_context, "127.0.0.1:0", f"gateway={TOKEN}")
    stubs = rpc.Stubs(f"127.0.0.1:{running.port}", telemetry.client_interceptors())
    app = telemetry.wrap_asgi(
        create_app(
            build_schema(10),
            stubs,
            GatewayConfig(service_token=TOKEN, max_body_bytes=1 << 20, request_timeout_seconds=5),
            gateway_auth.PartnerCache(30, 64 * 1024),
        )
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway"
        ) as client:
            reply = await client.post(
                "/graphql",
                json={
                    "query": CREATE,
                    "variables": {
                        "input": {
                            "callbackUrl": "https://hooks.example.com/in",
                            "apiKey": API_KEY,
                            "contactEmail": "ops@example.com",
                        }
                    },
                },
                headers={"Authorization": f"Bearer {issued.token}"},
            )
        assert reply.status_code == 200, reply.text
        secret = reply.json()["data"]["createNotificationCallbackConfig"]["secret"]
    finally:
        await stubs.close()
        await running.stop(0)
    spans = captured.finished()
    http = [s for s in spans if s.kind == SpanKind.SERVER and s.name.startswith("POST")]
    assert len(http) == 1, [s.name for s in spans]
    root = http[0]
    assert root.context is not None and root.parent is None
    in_trace = [
        s for s in spans if s.context is not None and s.context.trace_id == root.context.trace_id
    ]
    names = {s.name for s in in_trace}
    create_rpc = "/hookkeeper.notifications.v1.CallbackConfigService/CreateCallbackConfig"
    # The gateway's client span and the service's server span of the same RPC.
    assert {s.kind for s in in_trace if s.name == create_rpc} == {SpanKind.CLIENT, SpanKind.SERVER}
    statements = [str((s.attributes or {}).get("db.statement", "")) for s in in_trace]
    # On PostgreSQL the insert is one CTE of the unit of work's statement.
    assert any("INSERT INTO callback_configs" in text for text in statements), names
    everything = "\n".join(s.to_json() for s in spans) + captured.logs.getvalue()
    for value in (secret, API_KEY, issued.token, TOKEN):
        assert value not in everything


async def test_each_delivery_attempt_is_a_trace_carried_to_the_partner_and_counted(
    app_context: AppContext, captured: Captured
) -> None:
    ctx = AppContext(
        app_context.database,
        app_context.keyring,
        Policy(allow_insecure_callbacks=True),
        app_context.clock,
    )
    receiver = await Receiver().start()
    runtime = delivery_runtime.build(
        ctx,
        Settings(allow_insecure_callbacks=True, dispatcher_poll_interval_seconds=0.05),
        with_dispatcher=True,
    )
    created = await CallbackConfigs(ctx).create(
        "acme",
        ConfigFields(receiver.url + "?token=partner-query-token-77", API_KEY, "ops@example.com"),
    )
    await runtime.notifications.subscribe("acme", "GuestReviewSubmitted", str(created.config.name))
    await runtime.notifications.publish(
        "acme", "GuestReviewSubmitted", "evt-1", '{"reviewId": "r1"}'
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        await receiver.wait_until(lambda: len(receiver.posts()) == 1)
    finally:
        stop.set()
        await task
        await receiver.stop()
    spans = captured.finished()
    # (Creating the configuration also queued a connectivity check: its own trace.)
    attempts = [
        s
        for s in spans
        if s.name == "delivery attempt"
        and (s.attributes or {}).get("hookkeeper.event_type") == "GuestReviewSubmitted"
    ]
    assert len(attempts) == 1
    attempt_context = attempts[0].context
    assert attempt_context is not None
    assert (attempts[0].attributes or {})["hookkeeper.delivery.outcome"] == "DELIVERED"
    children = [
        s
        for s in spans
        if s.kind == SpanKind.CLIENT
        and s.parent is not None
        and s.parent.span_id == attempt_context.span_id
    ]
    # The POST to the partner belongs to the attempt; signing makes no query
    # of its own (the claim read the batch's secrets).
    assert [s.name for s in children].count("POST") == 1
    assert not any("db.system" in (s.attributes or {}) for s in children)
    # W3C trace context reached the partner, naming the attempt's trace.
    post = next(r for r in receiver.posts() if r.envelope().get("eventType") != "CONNECTIVITY")
    assert post.headers["traceparent"].split("-")[1] == format(attempt_context.trace_id, "032x")
    everything = "\n".join(s.to_json() for s in spans)
    assert "partner-query-token-77" not in everything  # the URL's query is not recorded
    metric_data = captured.metrics.get_metrics_data()
    assert isinstance(metric_data, MetricsData)
    recorded = (everything, metric_data.to_json(), captured.logs.getvalue())
    for value in (API_KEY, created.secret, "partner-query-token-77"):
        assert all(value not in text for text in recorded)
    counted = {a["event_type"]: v for a, v in captured.metric_points()["hookkeeper.deliveries"]}
    assert counted["GuestReviewSubmitted"] == 1


async def test_the_sampler_reports_queue_depth_and_the_oldest_pending_age(
    app_context: AppContext, clock: FakeClock, captured: Captured
) -> None:
    notifications = delivery_runtime.default_notifications(app_context)
    created = await CallbackConfigs(app_context).create(
        "acme", ConfigFields("https://hooks.example.com/in", API_KEY, "ops@example.com")
    )
    await notifications.subscribe("acme", "GuestReviewSubmitted", str(created.config.name))
    await GaugeSampler(app_context).sample()
    before = captured.metric_points()["hookkeeper.delivery.queue.depth"][0][1]
    for n in range(3):
        await notifications.publish("acme", "GuestReviewSubmitted", f"e{n}", '{"n": 1}')
    clock.advance(timedelta(seconds=90))  # nobody dispatches: they wait
    await GaugeSampler(app_context).sample()
    points = captured.metric_points()
    assert points["hookkeeper.delivery.queue.depth"] == [({}, before + 3)]
    [(_, age)] = points["hookkeeper.delivery.queue.oldest_age"]
    assert age >= 90


async def test_endpoint_health_instruments(app_context: AppContext, captured: Captured) -> None:
    configs = CallbackConfigs(app_context)
    created = await configs.create(
        "acme", ConfigFields("https://hooks.example.com/x", "k", "ops@example.com", 5)
    )
    notifications = delivery_runtime.default_notifications(app_context)
    await notifications.subscribe("acme", "GuestReviewSubmitted", str(created.config.name))
    await notifications.publish("acme", "GuestReviewSubmitted", "e1", "{}")
    await configs.disable(created.config.name)
    await configs.disable(created.config.name)  # already disabled: not counted again
    telemetry.record_throttled("rate_limit", 3)
    points = captured.metric_points()
    assert points["hookkeeper.callback_configs.disabled"] == [({"reason": "manual"}, 1)]
    # The pending event and the not-yet-sent connectivity check.
    assert points["hookkeeper.deliveries.paused"] == [({}, 2)]
    assert points["hookkeeper.deliveries.throttled"] == [({"cause": "rate_limit"}, 3)]
