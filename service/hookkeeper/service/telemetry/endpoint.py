"""Metrics of endpoint health: configurations disabled, deliveries paused,
deliveries throttled. No-ops while metrics are off (telemetry.configure)."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.metrics import Counter, MeterProvider

from hookkeeper.service.telemetry.state import METER_NAME, state


@dataclass(frozen=True)
class _Counters:
    provider: MeterProvider
    disabled: Counter
    paused: Counter
    throttled: Counter


_current: list[_Counters] = []


def _counters() -> _Counters | None:
    provider = state.meter_provider
    if provider is None or state.instruments is None:
        return None
    if _current and _current[0].provider is provider:
        return _current[0]
    meter = provider.get_meter(METER_NAME)
    made = _Counters(
        provider,
        disabled=meter.create_counter(
            "hookkeeper.callback_configs.disabled",
            unit="{configuration}",
            description="Configurations disabled, by reason (gone, failing, manual).",
        ),
        paused=meter.create_counter(
            "hookkeeper.deliveries.paused",
            unit="{delivery}",
            description="Deliveries paused because their configuration is disabled.",
        ),
        throttled=meter.create_counter(
            "hookkeeper.deliveries.throttled",
            unit="{delivery}",
            description=(
                "Deliveries held back by a Retry-After answer (retry_after) or by "
                "max_deliveries_per_second (rate_limit)."
            ),
        ),
    )
    _current[:] = [made]
    return made


def record_disabled(reason: str) -> None:
    """One configuration disabled (``reason``: gone, failing or manual)."""
    counters = _counters()
    if counters is not None:
        counters.disabled.add(1, {"reason": reason})


def record_paused(count: int) -> None:
    """Deliveries paused."""
    counters = _counters()
    if counters is not None and count:
        counters.paused.add(count)


def record_throttled(cause: str, count: int = 1) -> None:
    """Deliveries held back (``cause``: retry_after, rate_limit or host_cap)."""
    counters = _counters()
    if counters is not None and count:
        counters.throttled.add(count, {"cause": cause})
