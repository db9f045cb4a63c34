"""Which OTEL_* settings switch telemetry on, and that off means nothing installed."""

from __future__ import annotations

import io
import logging

import pytest

from hookkeeper.service import telemetry


@pytest.mark.parametrize(
    ("env", "traces", "metrics"),
    [
        ({}, (), ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, ("otlp",), ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317"}, ("otlp",), ()),
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",), ()),
        (
            {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"},
            (),
            ("otlp",),
        ),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, (), ()),
    ],
)
def test_exporters_follow_the_standard_variables(
    env: dict[str, str], traces: tuple[str, ...], metrics: tuple[str, ...]
) -> None:
    choice = telemetry.exporters_from_env(env)
    assert (choice.traces, choice.metrics) == (traces, metrics)


def test_an_unsupported_exporter_is_named() -> None:
    with pytest.raises(ValueError, match=r"OTEL_TRACES_EXPORTER.*zipkin"):
        telemetry.exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_off_installs_nothing() -> None:
    assert telemetry.configure(env={}, install_global=False) is False
    assert not telemetry.is_enabled()
    assert telemetry.server_interceptors() == []
    assert telemetry.client_interceptors() == []
    app = object()
    assert telemetry.wrap_asgi(app) is app
    # Recording functions return at once without a meter.
    telemetry.record_rpc("/a.B/C", __import__("grpc").StatusCode.OK, 1.0)
    telemetry.record_warning(7, "sent")


def test_debug_logs_never_echo_bound_values() -> None:
    stream = io.StringIO()
    handler = telemetry.log_handler(stream)
    driver, ours = logging.getLogger("aiosqlite"), logging.getLogger("hookkeeper.test")
    for logger in (driver, ours):
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        driver.debug("executing %s", "https://hooks.example.com/in?token=bound-value-1")
        ours.debug("our own debug line")
        driver.warning("driver warnings still pass")
    finally:
        for logger in (driver, ours):
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)
    text = stream.getvalue()
    assert "bound-value-1" not in text
    assert "our own debug line" in text
    assert "driver warnings still pass" in text
