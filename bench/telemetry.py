"""What OpenTelemetry costs: RPC rate with telemetry off and on, in one run.

An in-process server on a temporary SQLite database answers
GetCallbackConfig to concurrent callers over a real channel. Off and on
alternate (off, on, off, on) so drift on a noisy machine shows up as the gap
between the two off rounds instead of skewing the ratio. "On" records every
span (gRPC server + SQL queries) into a processor whose exporter drops them,
and every metric into an in-memory reader: the cost of instrumentation
itself, not of a network.

"Off" is the default (no OTEL_* variable set): the server gets no telemetry
interceptor at all, so its request path is the same code as one built
without telemetry; what remains are the ``record_*`` calls the workers make,
which return at their first line. Their cost per call is measured here too,
against the time of one RPC.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from bench.run import Section
from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.service import telemetry
from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.crypto.keyring import Keyring, generate_key_entry
from hookkeeper.service.server import start_server
from hookkeeper.service.store import migrate
from hookkeeper.service.store.database import Database

SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
CONCURRENCY = 16
TOKEN = "bench-telemetry-token-0123456789"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


class _DroppingExporter(SpanExporter):
    """Accepts spans and throws them away (the cost of recording, not sending)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _rate(ctx: AppContext, on: bool) -> float:
    """GetCallbackConfig calls per second with telemetry off or on."""
    if on:
        # Spans go through a synchronous processor to an exporter that drops
        # them: an upper bound of the recording cost (production batches).
        telemetry.configure(
            env={},
            span_exporter=_DroppingExporter(),
            metric_reader=InMemoryMetricReader(),
            install_global=False,
        )
        telemetry.instrument_engine(ctx.database.engine.sync_engine)
    running = await start_server(ctx, "127.0.0.1:0", f"bench={TOKEN}")
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{running.port}", interceptors=telemetry.client_interceptors() or None
        ) as channel:
            stub = cc_grpc.CallbackConfigServiceStub(channel)
            created = await stub.CreateCallbackConfig(
                cc.CreateCallbackConfigRequest(
                    parent="partners/bench",
                    callback_config=cc.CallbackConfig(
                        callback_url="https://hooks.example.com/in",
                        api_key="bench-api-key",
                        contact_email="ops@example.com",
                    ),
                ),
                metadata=AUTH,
            )
            request = cc.GetCallbackConfigRequest(name=created.callback_config.name)
            count = 0
            stop_at = 0.0

            async def caller() -> None:
                nonlocal count
                while time.perf_counter() < stop_at:
                    await stub.GetCallbackConfig(request, metadata=AUTH)
                    count += 1

            stop_at = time.perf_counter() + 0.5  # warm-up
            await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
            count = 0
            started = time.perf_counter()
            stop_at = started + SECONDS
            await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
            return count / (time.perf_counter() - started)
    finally:
        await running.stop(0)
        telemetry.shutdown()


def _disabled_call_ns() -> tuple[float, float]:
    """Nanoseconds per disabled ``record_delivery`` call, and per empty call."""

    def empty(outcome: str, event_type: str, duration: float | None) -> None:
        return None

    n = 200_000
    results = []
    for fn in (telemetry.record_delivery, empty):
        started = time.perf_counter_ns()
        for _ in range(n):
            fn("delivered", "lodging.review.created", 0.1)
        results.append((time.perf_counter_ns() - started) / n)
    return results[0], results[1]


async def measure() -> Section:
    """Off/on/off/on rounds; the disabled-path cost per call."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await asyncio.to_thread(migrate.upgrade, url)
        database = Database(url)
        ctx = AppContext(database, Keyring.parse(generate_key_entry()), Policy())
        try:
            rounds = [(on, await _rate(ctx, on)) for on in (False, True, False, True)]
        finally:
            await database.close()
    off = [r for on, r in rounds if not on]
    on_rates = [r for on, r in rounds if on]
    off_mean, on_mean = sum(off) / 2, sum(on_rates) / 2
    drift = abs(off[0] - off[1]) / off_mean
    disabled_ns, empty_ns = _disabled_call_ns()
    rpc_ns = 1e9 / off_mean * CONCURRENCY  # latency of one RPC at this concurrency
    share = disabled_ns / rpc_ns
    body = (
        f"""
GetCallbackConfig over a real channel to an in-process server (SQLite, {CONCURRENCY}
concurrent callers, {SECONDS:.0f} s per round), rounds in the order off, on, off, on.

| round | telemetry | calls/s |
| --- | --- | --- |
"""
        + "".join(
            f"| {i + 1} | {'on' if on else 'off'} | {rate:,.0f} |\n"
            for i, (on, rate) in enumerate(rounds)
        )
        + f"""
- on / off: **{on_mean / off_mean:.2f}** (the cost of recording every span and metric)
- off round 1 vs off round 3: {drift:.1%} apart (the machine's noise in this run)
- a disabled `record_delivery` call: {disabled_ns:.0f} ns (an empty function: {empty_ns:.0f} ns),
  {share:.4%} of one RPC's latency ({rpc_ns / 1e6:.2f} ms)

With telemetry off the server has no telemetry interceptor, so the request path
is identical to a build without telemetry; the only residue is the disabled
`record_*` calls above.
"""
    )
    return Section(
        "Telemetry overhead",
        body,
        [
            ("off: a disabled record call costs < 0.1% of one RPC", share < 0.001),
            ("on: at least half the off rate", on_mean >= 0.5 * off_mean),
        ],
    )
