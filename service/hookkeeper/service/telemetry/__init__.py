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
- ``record_disabled`` / ``record_paused`` / ``record_throttled`` — endpoint
  health (configurations disabled, deliveries paused, deliveries held back).
- ``set_delivery_queue`` / ``set_secrets_expiring`` — the database-wide
  gauges, sampled by service/gauge_sampler.py.

Nothing sensitive is ever put in a span attribute or a metric label: the
instrumentations record methods, statements (with placeholders, never bound
values), status codes and URLs; our own labels are enums and method names.

The package's modules: ``setup`` (the environment, the providers),
``instrumentation`` (the official instrumentations, our spans), ``metrics``
(our instruments), ``logs`` (JSON logs with trace ids), ``state`` (what
``configure`` set up). Callers use the names exported here.
"""

from hookkeeper.service.telemetry.endpoint import (
    record_disabled,
    record_paused,
    record_throttled,
)
from hookkeeper.service.telemetry.instrumentation import (
    ClientSpan,
    client_interceptors,
    client_span,
    instrument_engine,
    server_interceptors,
    span,
    wrap_asgi,
)
from hookkeeper.service.telemetry.logs import log_handler, setup_logging
from hookkeeper.service.telemetry.metrics import (
    RpcMetricsInterceptor,
    record_delivery,
    record_rpc,
    record_warning,
    set_delivery_queue,
    set_secrets_expiring,
)
from hookkeeper.service.telemetry.setup import (
    ExporterChoice,
    configure,
    exporters_from_env,
    is_enabled,
    metrics_enabled,
    shutdown,
    tracer_provider,
)
from hookkeeper.service.telemetry.state import METER_NAME

__all__ = [
    "METER_NAME",
    "ClientSpan",
    "ExporterChoice",
    "RpcMetricsInterceptor",
    "client_interceptors",
    "client_span",
    "configure",
    "exporters_from_env",
    "instrument_engine",
    "is_enabled",
    "log_handler",
    "metrics_enabled",
    "record_delivery",
    "record_disabled",
    "record_paused",
    "record_rpc",
    "record_throttled",
    "record_warning",
    "server_interceptors",
    "set_delivery_queue",
    "set_secrets_expiring",
    "setup_logging",
    "shutdown",
    "span",
    "tracer_provider",
    "wrap_asgi",
]
