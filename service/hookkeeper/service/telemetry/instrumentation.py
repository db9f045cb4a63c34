"""The official OpenTelemetry instrumentations (gRPC server and client,
SQLAlchemy, ASGI) and our own spans (delivery attempts and their requests);
each is a no-op when tracing is off."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
import yarl
from opentelemetry import propagate, trace
from opentelemetry.trace import StatusCode

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


class ClientSpan:
    """The client span of one outgoing delivery request, as a context manager:
    ``headers`` carry its W3C ``traceparent`` (random ids only, safe to show a
    partner; nothing goes into baggage) and ``answered`` records the status.
    The span records the callback URL without its query string or
    credentials, which partners sometimes use for tokens. With tracing off it
    is a shared no-op: no span, no headers."""

    __slots__ = ("_scope", "_span", "headers")

    def __init__(self, span: trace.Span | None = None) -> None:
        self._span = span
        self._scope: contextlib.AbstractContextManager[trace.Span] | None = None
        self.headers: dict[str, str] = {}

    def __enter__(self) -> ClientSpan:
        if self._span is not None:
            self._scope = trace.use_span(self._span, end_on_exit=True)
            self._scope.__enter__()
            propagate.inject(self.headers)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: object, tb: object) -> None:
        if self._scope is None:
            return
        if kind is not None and self._span is not None:
            # The type only: an error's text may quote the URL.
            self._span.set_status(StatusCode.ERROR, kind.__name__)
            self._span.set_attribute("error.type", kind.__name__)
        self._scope.__exit__(None, None, None)

    def answered(self, status: int) -> None:
        """Records the answer's status (4xx and 5xx mark the span failed)."""
        if self._span is not None:
            self._span.set_attribute("http.response.status_code", status)
            if status >= 400:
                self._span.set_status(StatusCode.ERROR)


_NO_SPAN = ClientSpan()


def client_span(method: str, url: str) -> ClientSpan:
    """A ClientSpan for one request (the shared no-op when tracing is off)."""
    provider = state.tracer_provider
    if provider is None:
        return _NO_SPAN
    shown = yarl.URL(url).with_query(None).with_user(None).with_fragment(None)
    started = provider.get_tracer(METER_NAME).start_span(
        method,
        kind=trace.SpanKind.CLIENT,
        attributes={
            "http.request.method": method,
            "url.full": str(shown),
            "server.address": shown.host or "",
            "server.port": shown.port or 0,
        },
    )
    return ClientSpan(started)


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
