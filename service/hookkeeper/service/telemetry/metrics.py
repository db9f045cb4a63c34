"""Our metric instruments and the ``record_*`` / ``set_*`` functions the
service feeds; each returns at its first line when metrics are off."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider

from hookkeeper.service.telemetry.state import METER_NAME, Instruments, state


def create_instruments(provider: MeterProvider) -> Instruments:
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
    return Instruments(
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
    return [Observation(n, {"within_days": d}) for d, n in sorted(state.secrets_expiring.items())]


def _observe_queue_depth(_options: CallbackOptions) -> Iterable[Observation]:
    return [] if state.queue_depth is None else [Observation(state.queue_depth)]


def _observe_queue_age(_options: CallbackOptions) -> Iterable[Observation]:
    return [] if state.queue_oldest_age is None else [Observation(state.queue_oldest_age)]


def record_rpc(method: str, code: grpc.StatusCode, duration_ms: float) -> None:
    """One served RPC (``method`` is ``/package.Service/Method``)."""
    instruments = state.instruments
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
    instruments = state.instruments
    if instruments is None:
        return
    labels = {"outcome": outcome, "event_type": event_type}
    instruments.deliveries.add(1, labels)
    if duration_seconds is not None:
        instruments.delivery_duration.record(duration_seconds, labels)


def set_delivery_queue(depth: int, oldest_age_seconds: float) -> None:
    """The dispatcher's latest view of its queue (reported at collection time)."""
    if state.instruments is None:
        return
    state.queue_depth = depth
    state.queue_oldest_age = oldest_age_seconds


def record_warning(threshold_days: int, outcome: str) -> None:
    """One expiry-warning send (``outcome``: ``sent`` or ``failed``)."""
    instruments = state.instruments
    if instruments is None:
        return
    instruments.warnings.add(1, {"threshold_days": threshold_days, "outcome": outcome})


def set_secrets_expiring(counts: Mapping[int, int]) -> None:
    """How many current secrets expire within each window (days → count)."""
    if state.instruments is None:
        return
    state.secrets_expiring = dict(counts)


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
