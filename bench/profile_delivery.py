"""Where delivery's CPU and time go: ``python -m bench.profile_delivery PHASE``.

PHASE is one of:

- ``batch``: ``hookkeeper serve`` under ``py-spy`` while BatchPublishEvents
  (1,000 per call, 4 callers) publishes BENCH_DELIVERIES events;
- ``drain``: BENCH_DELIVERIES events queued, then one ``hookkeeper
  dispatcher`` under ``py-spy`` delivers them to the benchmark's receiver;
- ``single``: serve under ``py-spy`` while PublishEvent (64 callers)
  publishes up to 5,000 events;
- ``light``: the dispatcher runs (under ``py-spy``; serve with
  PROFILE_TARGET=serve) while events are published at BENCH_RATE events/s
  for BENCH_SECONDS (BatchPublishEvents every 10 ms as in ``bench.delivery``;
  one PublishEvent each with BENCH_SINGLE=1): publish→2xx p50/p90/p99.

Prints the rate, the profiled process's CPU per event and the summary of
``bench.profile_writes.summarise`` (share by layer, functions by own
samples). Same processes and settings as ``bench.delivery``; not part of
``make bench``. Run it under the bench lock.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import grpc

from bench.delivery import (
    DISPATCHER_WORKERS,
    PARTNER,
    _batch_publish,
    _cpu_seconds,
    _latencies,
    _latency_parts,
    _paced_batches,
    _paced_publish,
    _pct,
    _publish,
    _start_receiver,
    _subscribed,
    _wait_for,
    serve_env,
)
from bench.grpc_api import _create_database
from bench.profile_writes import summarise
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.notifications.v1 import notification_pb2_grpc as nt_grpc
from tests.support.postgres import drop_database
from tests.support.processes import (
    BIN,
    Process,
    free_port,
    run_cli,
    start,
    wait_for_grpc_health,
)

DELIVERIES = int(os.environ.get("BENCH_DELIVERIES", "20000"))
RATE = float(os.environ.get("BENCH_RATE", "700"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
# Which process py-spy watches in the light phase: dispatcher or serve.
TARGET = os.environ.get("PROFILE_TARGET", "dispatcher")


async def _breakdown(db_url: str, prefix: str) -> str:
    """Where publish→2xx went: until the attempt started, and the request."""
    parts = await _latency_parts(db_url, prefix)
    waited = sorted(w for w, _ in parts)
    sent = sorted(s for _, s in parts)
    return (
        f"until the attempt started p50/p99 {_pct(waited, 0.5):.1f} / {_pct(waited, 0.99):.1f} ms;"
        f" the request p50/p99 {_pct(sent, 0.5):.1f} / {_pct(sent, 0.99):.1f} ms"
    )


def _spy(pid: int, raw: Path) -> subprocess.Popen[bytes] | None:
    if os.environ.get("PROFILE_OFF"):
        raw.write_text("")
        return None  # figures only (py-spy takes CPU from the same machine)
    return subprocess.Popen(
        [str(BIN / "py-spy"), "record", "--format", "raw", "--rate", "200",
         "--nonblocking", "--subprocesses", "--pid", str(pid), "-o", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _stop_spy(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is None:
        return
    spy.send_signal(signal.SIGINT)
    spy.wait(30)


async def _run(phase: str, tmp: Path, db_url: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    receiver = await asyncio.to_thread(_start_receiver, port)
    api = f"127.0.0.1:{free_port()}"
    # HOOKKEEPER_* of this process pass through (e.g. to profile a setting).
    passed = {k: v for k, v in os.environ.items() if k.startswith("HOOKKEEPER_")}
    env = await serve_env(db_url, tmp, api, passed)
    await asyncio.to_thread(run_cli, ["migrate"], env)
    processes: list[Process] = [start(["serve"], env, tmp / "serve.log")]
    raw = Path(os.environ.get("PROFILE_RAW", tmp / "profile.txt"))
    try:
        await asyncio.to_thread(wait_for_grpc_health, api)
        channel = grpc.aio.insecure_channel(api)
        stub = nt_grpc.NotificationServiceStub(channel)
        configs = cc_grpc.CallbackConfigServiceStub(channel)
        await _subscribed(configs, stub, PARTNER, f"{base}/hook", 10)
        async with aiohttp.ClientSession() as session:
            serve = processes[0].popen.pid
            if phase in ("drain", "light"):
                if phase == "drain":
                    await _batch_publish(stub, PARTNER, "drain", DELIVERIES)
                # As bench.delivery: BENCH_DISPATCHER_WORKERS processes (py-spy
                # follows the supervisor's workers).
                dispatcher = start(
                    ["dispatcher", "--workers", str(DISPATCHER_WORKERS)],
                    env,
                    tmp / "dispatcher.log",
                )
                processes.append(dispatcher)
                while "started" not in dispatcher.output():  # noqa: ASYNC110 (its log)
                    await asyncio.sleep(0.01)
                await session.post(f"{base}/reset")
            pid = (
                serve if phase in ("batch", "single") or TARGET == "serve" else dispatcher.popen.pid
            )
            spy = _spy(pid, raw)
            await asyncio.sleep(0.5)
            began, cpu = time.perf_counter(), _cpu_seconds(pid)
            if phase == "batch":
                rate = await _batch_publish(stub, PARTNER, "batch", DELIVERIES)
                label = "BatchPublishEvents"
            elif phase == "single":
                rate = await _publish(stub, "single", min(DELIVERIES, 5000))
                label = "PublishEvent"
            elif phase == "drain":
                done = await _wait_for(session, base, DELIVERIES) - began
                rate = DELIVERIES / done
                label = "drain"
            else:
                pace = _paced_publish if os.environ.get("BENCH_SINGLE") else _paced_batches
                await pace(stub, "light", RATE, int(RATE * SECONDS))
                await _wait_for(session, base, int(RATE * SECONDS))
                lat = await _latencies(db_url, "light")
                print(await _breakdown(db_url, "light"))
                rate = RATE
                label = (
                    f"light: p50 {_pct(lat, 0.5):.1f} ms, p90 {_pct(lat, 0.9):.1f}, "
                    f"p99 {_pct(lat, 0.99):.1f} ms at"
                )
            elapsed = time.perf_counter() - began
            cpu = _cpu_seconds(pid) - cpu
            _stop_spy(spy)
            print(
                f"{label} {rate:,.0f}/s; profiled process CPU "
                f"{cpu / (rate * elapsed) * 1e6:.1f} µs/event ({cpu / elapsed:.0%} of a core)"
            )
        await channel.close(None)
        print(summarise(raw, top=int(os.environ.get("BENCH_TOP", "40"))))
    finally:
        for process in reversed(processes):
            process.terminate()
        receiver.terminate()
        receiver.wait(10)


async def main(phase: str) -> None:
    """Runs one phase on a fresh database."""
    url, database = await _create_database()
    tmp = Path(tempfile.mkdtemp(prefix="hookkeeper-profile-delivery-"))
    try:
        await _run(phase, tmp, url)
        shutil.rmtree(tmp)
    finally:
        await drop_database(database)


PHASES = ("batch", "drain", "single", "light")

if __name__ == "__main__":
    chosen = sys.argv[1] if len(sys.argv) > 1 else "batch"
    if chosen not in PHASES:
        sys.exit(f"usage: python -m bench.profile_delivery [{'|'.join(PHASES)}]\n{__doc__}")
    asyncio.run(main(chosen))
