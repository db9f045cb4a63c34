"""The official OpenTelemetry instrumentations (gRPC server and client,
SQLAlchemy, aiohttp, ASGI) and our own spans; each is a no-op when tracing
is off."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
from opentelemetry import trace

from hookkeeper.service.telemetry.metrics import RpcMetricsInterceptor
from hookkeeper.service.telemetry.state import METER_NAME, state


def server_interceptors() -> list[grpc.aio.ServerInterceptor[Any, Any]]:
    """Interceptors for the gRPC server: the official tracing one (it also
    extracts the W3C trace context from the request metadata) and ours for
    the RPC latency/code metric. Empty when telemetry is off."""
    interceptors: list[grpc.aio.ServerInterceptor[Any, Any]] = []
    if state.tracer_provider is not None:
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        interceptors.append(
            aio_server_interceptor(tracer_provider=state.tracer_provider)  # type: ignore[no-untyped-call]
        )
    if state.instruments is not None:
        interceptors.append(RpcMetricsInterceptor())
    return interceptors


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for gRPC clients (the gateway): spans plus W3C trace
    context injected into the call metadata. Empty when tracing is off."""
    if state.tracer_provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    found: list[grpc.aio.ClientInterceptor] = aio_client_interceptors(  # type: ignore[no-untyped-call]
        tracer_provider=state.tracer_provider
    )
    return found


def instrument_engine(engine: Any) -> None:
    """Traces the queries of a SQLAlchemy engine (pass ``AsyncEngine.sync_engine``)."""
    if state.tracer_provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # The instrumentor is a process-wide singleton that instruments once:
    # re-instrument with every engine so far when a second one appears.
    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    state.instrumented_engines.append(engine)
    instrumentor.instrument(
        engines=list(state.instrumented_engines),
        tracer_provider=state.tracer_provider,
        enable_commenter=False,
        # The instrumentation declares SQLAlchemy < 2.1 while the project runs
        # 2.1; the engine events it hooks are unchanged (the tests prove the
        # spans arrive), so skip the declared-range check rather than lose them.
        skip_dep_check=True,
    )


def aiohttp_trace_configs() -> list[Any]:
    """``trace_configs`` for the delivery ``aiohttp.ClientSession``: a client
    span per POST and the W3C ``traceparent`` header on it (random ids only,
    safe to show a partner; nothing goes into baggage). The span records the
    callback URL without its query string or credentials, which partners
    sometimes use for tokens. Empty when tracing is off."""
    if state.tracer_provider is None:
        return []
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    def without_query(url: Any) -> str:
        return str(url.with_query(None).with_user(None))

    return [create_trace_config(url_filter=without_query, tracer_provider=state.tracer_provider)]


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, str | int]) -> Iterator[trace.Span | None]:
    """A span of our own around work no instrumentation covers (one delivery
    attempt: signing queries and the POST become its children); yields None
    and does nothing when tracing is off. ``attributes`` are ids and enums only."""
    provider = state.tracer_provider
    if provider is None:
        yield None
        return
    tracer = provider.get_tracer(METER_NAME)
    with tracer.start_as_current_span(name, attributes=dict(attributes)) as current:
        yield current


def wrap_asgi(app: Any) -> Any:
    """The gateway's ASGI app wrapped by the official ASGI middleware (server
    spans, W3C context from the request headers); ``app`` itself when off."""
    if state.tracer_provider is None and state.meter_provider is None:
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(
        app, tracer_provider=state.tracer_provider, meter_provider=state.meter_provider
    )
