"""What :func:`hookkeeper.service.telemetry.configure` set up, shared by the
telemetry modules; the default is "all off"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

METER_NAME = "hookkeeper"


@dataclass
class Instruments:
    """The metric instruments, created once a meter provider exists."""

    rpc_duration: metrics.Histogram
    deliveries: metrics.Counter
    delivery_duration: metrics.Histogram
    warnings: metrics.Counter


@dataclass
class State:
    """What :func:`configure` set up; the module-level default is "all off"."""

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    instruments: Instruments | None = None
    # Latest values of the observable gauges, read at collection time.
    secrets_expiring: dict[int, int] = field(default_factory=dict)
    queue_depth: int | None = None
    queue_oldest_age: float | None = None
    instrumented_engines: list[Any] = field(default_factory=list)


state = State()
