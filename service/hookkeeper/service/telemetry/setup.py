"""Reading the ``OTEL_*`` variables and creating (or shutting down) the
tracer and meter providers."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
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

from hookkeeper.service.telemetry.metrics import create_instruments
from hookkeeper.service.telemetry.state import State, state

_log = logging.getLogger(__name__)
_TRUE = {"1", "true", "yes", "on"}


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
    return state.tracer_provider is not None or state.meter_provider is not None


def metrics_enabled() -> bool:
    """Whether metrics are recorded (callers skip work that only feeds gauges)."""
    return state.instruments is not None


def tracer_provider() -> TracerProvider | None:
    """The configured tracer provider, None when tracing is off."""
    return state.tracer_provider


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
        state.tracer_provider = provider
        if install_global:
            trace.set_tracer_provider(provider)
    if metric_reader is not None or metric_names:
        readers: list[MetricReader] = [] if metric_reader is None else [metric_reader]
        readers += [PeriodicExportingMetricReader(_metric_exporter(n)) for n in metric_names]
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        state.meter_provider = meter_provider
        state.instruments = create_instruments(meter_provider)
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
    if state.instrumented_engines:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        SQLAlchemyInstrumentor().uninstrument()
    if state.tracer_provider is not None:
        state.tracer_provider.shutdown()
    if state.meter_provider is not None:
        state.meter_provider.shutdown()
    state.__dict__.update(State().__dict__)
