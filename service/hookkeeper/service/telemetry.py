"""OpenTelemetry traces and metrics, and JSON logs that carry the trace id.

Configured by the standard ``OTEL_*`` variables, read once at start-up:

- ``OTEL_SDK_DISABLED=true`` turns everything off.
- Traces go out over OTLP/gRPC when ``OTEL_TRACES_EXPORTER`` says ``otlp``
  (``console`` prints them, ``none`` drops them) or, when it is unset, when an
  OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``). Metrics likewise with
  ``OTEL_METRICS_EXPORTER`` / ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``. The
  exporters themselves read the rest (headers, timeout, insecure, interval).
- ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` name the process.

With nothing configured no SDK object is created, no instrumentation is
installed and every ``record_*`` function returns at its first line: off costs
nothing measurable (``make bench`` shows it). Unlike the SDK's own default,
an unset exporter does not mean "OTLP to localhost": a developer's
``hookkeeper serve`` should not try to reach a collector nobody runs.

Instruments that other parts of the service feed (see docs/operations.md for
what each metric means):

- ``record_rpc`` — fed by :func:`server_interceptors` (RPC latency and codes).
- ``record_delivery`` — the delivery dispatcher, one call per attempt (which
  it also wraps in :func:`span`).
- ``record_warning`` — the expiry mailer.
- ``set_delivery_queue`` / ``set_secrets_expiring`` — the database-wide
  gauges, sampled by service/gauge_sampler.py.

Nothing sensitive is ever put in a span attribute or a metric label: the
instrumentations record methods, statements (with placeholders, never bound
values), status codes and URLs; our own labels are enums and method names.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import grpc
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from pythonjsonlogger.json import JsonFormatter

_log = logging.getLogger(__name__)

METER_NAME = "hookkeeper"
_TRUE = {"1", "true", "yes", "on"}


@dataclass
class _Instruments:
    """The metric instruments, created once a meter provider exists."""

    rpc_duration: metrics.Histogram
    deliveries: metrics.Counter
    delivery_duration: metrics.Histogram
    warnings: metrics.Counter


@dataclass
class _State:
    """What :func:`configure` set up; the module-level default is "all off"."""

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    instruments: _Instruments | None = None
    # Latest values of the observable gauges, read at collection time.
    secrets_expiring: dict[int, int] = field(default_factory=dict)
    queue_depth: int | None = None
    queue_oldest_age: float | None = None
    instrumented_engines: list[Any] = field(default_factory=list)


_state = _State()


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ExporterChoice:
    """Which exporters the environment asks for (empty tuples: none)."""

    traces: tuple[str, ...]
    metrics: tuple[str, ...]

    @property
    def enabled(self) -> bool:
        """Whether anything at all is exported."""
        return bool(self.traces or self.metrics)


def _choice(env: Mapping[str, str], variable: str, specific_endpoint: str) -> tuple[str, ...]:
    raw = env.get(variable, "").strip().lower()
    if not raw:
        configured = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(specific_endpoint)
        return ("otlp",) if configured else ()
    names = tuple(n.strip() for n in raw.split(",") if n.strip() and n.strip() != "none")
    unknown = [n for n in names if n not in {"otlp", "console"}]
    if unknown:
        raise ValueError(f"{variable}: unsupported exporter {unknown[0]!r} (otlp, console, none)")
    return names


def exporters_from_env(env: Mapping[str, str] | None = None) -> ExporterChoice:
    """Reads the OTEL_* variables that decide whether and where to export."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return ExporterChoice((), ())
    return ExporterChoice(
        traces=_choice(env, "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        metrics=_choice(env, "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
    )


def is_enabled() -> bool:
    """Whether traces or metrics are being recorded."""
    return _state.tracer_provider is not None or _state.meter_provider is not None


def metrics_enabled() -> bool:
    """Whether metrics are recorded (callers skip work that only feeds gauges)."""
    return _state.instruments is not None


def tracer_provider() -> TracerProvider | None:
    """The configured tracer provider, None when tracing is off."""
    return _state.tracer_provider


def meter_provider() -> MeterProvider | None:
    """The configured meter provider, None when metrics are off."""
    return _state.meter_provider if _state.instruments is not None else None


def configure(
    service_name: str = "hookkeeper",
    *,
    env: Mapping[str, str] | None = None,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
    install_global: bool = True,
) -> bool:
    """Sets up tracing and metrics as the environment says; returns whether on.

    Tests pass ``span_exporter`` / ``metric_reader`` (the SDK's in-memory ones)
    to turn telemetry on regardless of the environment, and
    ``install_global=False`` so the process-wide providers stay untouched.
    """
    choice = exporters_from_env(env)
    traces = list(choice.traces)
    metric_names = list(choice.metrics)
    if span_exporter is None and metric_reader is None and not choice.enabled:
        return False
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over our default.
        resource = resource.merge(Resource({"service.name": service_name}))
    if span_exporter is not None or traces:
        provider = TracerProvider(resource=resource)
        if span_exporter is not None:
            # Synchronous export: tests read spans right after the call.
            provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        for name in traces:
            provider.add_span_processor(BatchSpanProcessor(_span_exporter(name)))
        _state.tracer_provider = provider
        if install_global:
            trace.set_tracer_provider(provider)
    if metric_reader is not None or metric_names:
        readers: list[MetricReader] = [] if metric_reader is None else [metric_reader]
        readers += [PeriodicExportingMetricReader(_metric_exporter(n)) for n in metric_names]
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        _state.meter_provider = meter_provider
        _state.instruments = _create_instruments(meter_provider)
        if install_global:
            metrics.set_meter_provider(meter_provider)
    _log.info(
        "telemetry on: traces=%s metrics=%s",
        ",".join(traces) or ("in-memory" if span_exporter else "off"),
        ",".join(metric_names) or ("in-memory" if metric_reader else "off"),
    )
    return True


def _span_exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _metric_exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter(out=sys.stderr)
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def shutdown() -> None:
    """Flushes and stops the providers and forgets them (telemetry is off after)."""
    if _state.instrumented_engines:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        SQLAlchemyInstrumentor().uninstrument()
    if _state.tracer_provider is not None:
        _state.tracer_provider.shutdown()
    if _state.meter_provider is not None:
        _state.meter_provider.shutdown()
    _state.__dict__.update(_State().__dict__)


# ------------------------------------------------------------- instrumentation


def server_interceptors() -> list[grpc.aio.ServerInterceptor[Any, Any]]:
    """Interceptors for the gRPC server: the official tracing one (it also
    extracts the W3C trace context from the request metadata) and ours for
    the RPC latency/code metric. Empty when telemetry is off."""
    interceptors: list[grpc.aio.ServerInterceptor[Any, Any]] = []
    if _state.tracer_provider is not None:
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        interceptors.append(
            aio_server_interceptor(tracer_provider=_state.tracer_provider)  # type: ignore[no-untyped-call]
        )
    if _state.instruments is not None:
        interceptors.append(RpcMetricsInterceptor())
    return interceptors


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for gRPC clients (the gateway): spans plus W3C trace
    context injected into the call metadata. Empty when tracing is off."""
    if _state.tracer_provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    found: list[grpc.aio.ClientInterceptor] = aio_client_interceptors(  # type: ignore[no-untyped-call]
        tracer_provider=_state.tracer_provider
    )
    return found


def instrument_engine(engine: Any) -> None:
    """Traces the queries of a SQLAlchemy engine (pass ``AsyncEngine.sync_engine``)."""
    if _state.tracer_provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # The instrumentor is a process-wide singleton that instruments once:
    # re-instrument with every engine so far when a second one appears.
    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    _state.instrumented_engines.append(engine)
    instrumentor.instrument(
        engines=list(_state.instrumented_engines),
        tracer_provider=_state.tracer_provider,
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
    if _state.tracer_provider is None:
        return []
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    def without_query(url: Any) -> str:
        return str(url.with_query(None).with_user(None))

    return [create_trace_config(url_filter=without_query, tracer_provider=_state.tracer_provider)]


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, str | int]) -> Iterator[trace.Span | None]:
    """A span of our own around work no instrumentation covers (one delivery
    attempt: signing queries and the POST become its children); yields None
    and does nothing when tracing is off. ``attributes`` are ids and enums only."""
    provider = _state.tracer_provider
    if provider is None:
        yield None
        return
    tracer = provider.get_tracer(METER_NAME)
    with tracer.start_as_current_span(name, attributes=dict(attributes)) as current:
        yield current


def wrap_asgi(app: Any) -> Any:
    """The gateway's ASGI app wrapped by the official ASGI middleware (server
    spans, W3C context from the request headers); ``app`` itself when off."""
    if _state.tracer_provider is None and _state.meter_provider is None:
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(
        app, tracer_provider=_state.tracer_provider, meter_provider=_state.meter_provider
    )


# --------------------------------------------------------------------- metrics


def _create_instruments(provider: MeterProvider) -> _Instruments:
    meter = provider.get_meter(METER_NAME)
    meter.create_observable_gauge(
        "hookkeeper.secrets.expiring",
        callbacks=[_observe_secrets_expiring],
        unit="{secret}",
        description="Configurations whose current secret expires within within_days days.",
    )
    meter.create_observable_gauge(
        "hookkeeper.delivery.queue.depth",
        callbacks=[_observe_queue_depth],
        unit="{delivery}",
        description="Delivery attempts waiting to be sent.",
    )
    meter.create_observable_gauge(
        "hookkeeper.delivery.queue.oldest_age",
        callbacks=[_observe_queue_age],
        unit="s",
        description="Age of the oldest delivery waiting to be sent.",
    )
    return _Instruments(
        rpc_duration=meter.create_histogram(
            "rpc.server.duration", unit="ms", description="gRPC server call duration."
        ),
        deliveries=meter.create_counter(
            "hookkeeper.deliveries",
            unit="{attempt}",
            description="Delivery attempts by outcome and event type.",
        ),
        delivery_duration=meter.create_histogram(
            "hookkeeper.delivery.duration",
            unit="s",
            description="Time from the POST to the partner's answer (or failure).",
        ),
        warnings=meter.create_counter(
            "hookkeeper.expiry_warnings",
            unit="{message}",
            description="Expiry warning e-mails by threshold and outcome (sent, failed).",
        ),
    )


def _observe_secrets_expiring(_options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(n, {"within_days": d}) for d, n in sorted(_state.secrets_expiring.items())]


def _observe_queue_depth(_options: CallbackOptions) -> Iterable[Observation]:
    return [] if _state.queue_depth is None else [Observation(_state.queue_depth)]


def _observe_queue_age(_options: CallbackOptions) -> Iterable[Observation]:
    return [] if _state.queue_oldest_age is None else [Observation(_state.queue_oldest_age)]


def record_rpc(method: str, code: grpc.StatusCode, duration_ms: float) -> None:
    """One served RPC (``method`` is ``/package.Service/Method``)."""
    instruments = _state.instruments
    if instruments is None:
        return
    service, _, name = method.lstrip("/").partition("/")
    instruments.rpc_duration.record(
        duration_ms,
        {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": name,
            "rpc.grpc.status_code": code.value[0],
        },
    )


def record_delivery(outcome: str, event_type: str, duration_seconds: float | None) -> None:
    """One delivery attempt. ``outcome`` is the state the delivery's row
    takes after it (``DELIVERED``, ``PENDING`` for a retry to come, ``FAILED``
    once the policy is exhausted, ``CANCELLED``); ``event_type`` the
    notification's event type. Never pass a URL, body or header value."""
    instruments = _state.instruments
    if instruments is None:
        return
    labels = {"outcome": outcome, "event_type": event_type}
    instruments.deliveries.add(1, labels)
    if duration_seconds is not None:
        instruments.delivery_duration.record(duration_seconds, labels)


def set_delivery_queue(depth: int, oldest_age_seconds: float) -> None:
    """The dispatcher's latest view of its queue (reported at collection time)."""
    if _state.instruments is None:
        return
    _state.queue_depth = depth
    _state.queue_oldest_age = oldest_age_seconds


def record_warning(threshold_days: int, outcome: str) -> None:
    """One expiry-warning send (``outcome``: ``sent`` or ``failed``)."""
    instruments = _state.instruments
    if instruments is None:
        return
    instruments.warnings.add(1, {"threshold_days": threshold_days, "outcome": outcome})


def set_secrets_expiring(counts: Mapping[int, int]) -> None:
    """How many current secrets expire within each window (days → count)."""
    if _state.instruments is None:
        return
    _state.secrets_expiring = dict(counts)


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Records ``rpc.server.duration`` with the method and status code (the
    official gRPC instrumentation only makes spans)."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Wraps unary-unary handlers with a timer; others pass through."""
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        method = handler_call_details.method
        behavior: Any = handler.unary_unary

        async def timed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start = time.perf_counter()
            failed = False
            try:
                return await behavior(request, context)
            except BaseException:
                failed = True
                raise
            finally:
                code = context.code()
                if not isinstance(code, grpc.StatusCode):
                    code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
                record_rpc(method, code, (time.perf_counter() - start) * 1000)

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


# --------------------------------------------------------------------- logging


class _TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` / ``span_id`` of the current span to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


class _BoundValuesFilter(logging.Filter):
    """Drops aiosqlite's DEBUG records: each echoes a statement with its bound
    values (callback URLs that may carry a partner's token, e-mail addresses),
    which the engine's ``hide_parameters`` cannot reach."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno < logging.INFO and record.name.startswith("aiosqlite"))


def log_handler(stream: IO[str], fmt: str = "json") -> logging.Handler:
    """A handler writing one JSON object per line (``fmt="text"`` for humans),
    with the trace and span ids whenever a span is active."""
    handler = logging.StreamHandler(stream)
    if fmt == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                datefmt="%Y-%m-%dT%H:%M:%S%z",
            )
        )
    handler.addFilter(_BoundValuesFilter())
    handler.addFilter(_TraceContextFilter())
    return handler


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Sends every log record to stderr through :func:`log_handler`,
    replacing any earlier handlers of the root logger."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(log_handler(sys.stderr, fmt))
    root.setLevel(level.upper())
