"""Deliveries spread over 10,000 distinct callback hosts: the dispatcher's
connection pool stays bounded and its memory flat (``BENCH_SCALE=1 make
bench``, or ``python -m bench.run bench.delivery_hosts``).

All traffic stays on 127.0.0.1: the distinct callback hosts are BENCH_HOSTS
(default 10,000) distinct consecutive ports of 127.0.0.1 below the kernel's
ephemeral range (from BENCH_HOSTS_FIRST_PORT; by default the first range of
free ports from 20000, else from 10000, else from 1024), all served by one
receiver process (``bench.many_ports_receiver``). The dispatcher's pool keys
connections by (scheme, host, port) and its per-host cap by host:port, so
each port is a distinct host to it: no connection to one can serve another.

Processes: ``hookkeeper serve`` (API only), ``hookkeeper dispatcher
--workers 1`` (concurrency 64, as ``bench.delivery``: its pool holds at most
max(64, 10) = 64 connections), the receiver and PostgreSQL (a fresh
database).

Phases:
1. setup: N partners ``partners/h-{i}``, each with one configuration at
   ``http://127.0.0.1:{port_i}/hook`` subscribed to GuestReviewSubmitted
   (32 at once; timed). Each configuration queues a connectivity GET.
2. the dispatcher starts and sends those N GETs (the receiver counts them).
3. BENCH_HOSTS_ROUNDS (default 3) rounds: one event per partner
   (PublishEvent, 32 callers), until the receiver counted all N POSTs and
   the N attempts are recorded; the dispatcher's RSS (summed over its
   processes) after each round, and its peak. The receiver counts the
   connections open at once over all its ports (as its loop sees them, and
   those the dispatcher has not closed yet: sockets still ESTABLISHED), and
   keeps their peaks.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import asyncpg
import grpc

from bench.delivery import (
    CONCURRENCY,
    METADATA,
    PAYLOAD,
    _subscribed,
    _tree_cpu_seconds,
    _tree_rss_kib,
    serve_env,
)
from bench.grpc_api import _create_database
from bench.run import Section
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.notifications.v1 import notification_pb2 as nt
from hookkeeper.notifications.v1 import notification_pb2_grpc as nt_grpc
from tests.support.postgres import drop_database
from tests.support.processes import (
    ROOT,
    Process,
    free_port,
    run_cli,
    start,
    wait_for_grpc_health,
)

HOSTS = int(os.environ.get("BENCH_HOSTS", "10000"))
FIRST_PORT = os.environ.get("BENCH_HOSTS_FIRST_PORT")  # None: the first free range
SEARCH_FROM = (20000, 10000, 1024)
ROUNDS = int(os.environ.get("BENCH_HOSTS_ROUNDS", "3"))  # at least 2
CALLERS = 32  # concurrent gRPC calls while creating and publishing
# The dispatcher's connection pool: Sender(max_connections=max(concurrency, 10))
# (service/hookkeeper/service/delivery/runtime.py).
LIMIT = max(CONCURRENCY, 10)
# Descriptors the receiver needs beyond its listening sockets: the
# connections (at most LIMIT if the pool holds), the control port, Python's own.
HEADROOM = 512
# A wait fails when its count has not moved for this long.
STALL_SECONDS = 60.0
TITLE = "Delivery to many callback hosts: connection pool and dispatcher memory"


def _scale() -> tuple[int, list[str]]:
    """The number of hosts to use and notes about it: BENCH_HOSTS, shrunk when
    the hard RLIMIT_NOFILE cannot hold that many listening sockets."""
    notes = []
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hosts = HOSTS
    if hard != resource.RLIM_INFINITY and hosts + HEADROOM > hard:
        hosts = hard - HEADROOM
        notes.append(
            f"BENCH_HOSTS={HOSTS:,} asked for, but the hard RLIMIT_NOFILE ({hard:,}) holds "
            f"{hosts:,} listening sockets plus {HEADROOM} for the rest: {hosts:,} hosts used."
        )
        print(f"bench.delivery_hosts: {notes[-1]}", flush=True)
    if hosts < 1:
        raise RuntimeError(f"RLIMIT_NOFILE hard limit {hard} leaves no room for listening sockets")
    return hosts, notes


def _ephemeral() -> tuple[int, int]:
    """The kernel's ephemeral port range (outgoing connections, other
    processes' free ports)."""
    range_file = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if not range_file.exists():
        return 32768, 60999
    low, high = (int(p) for p in range_file.read_text().split())
    return low, high


def _check_ports(first: int, count: int) -> None:
    """Fails clearly when the port range leaves the unprivileged ports or
    overlaps the ephemeral range."""
    last = first + count - 1
    if first < 1024 or last > 65535:
        raise RuntimeError(f"ports {first}-{last} are not all unprivileged TCP ports")
    low, high = _ephemeral()
    if first <= high and last >= low:
        raise RuntimeError(
            f"ports {first}-{last} overlap the ephemeral range {low}-{high} "
            "(set BENCH_HOSTS_FIRST_PORT and BENCH_HOSTS so they do not)"
        )


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _first_port(count: int) -> int:
    """BENCH_HOSTS_FIRST_PORT, else the start of the first ``count``
    consecutive free ports below the ephemeral range, searched from each of
    SEARCH_FROM in turn (other servers of this machine listen in places)."""
    if FIRST_PORT is not None:
        _check_ports(int(FIRST_PORT), count)
        return int(FIRST_PORT)
    low, _ = _ephemeral()
    for origin in SEARCH_FROM:
        first = port = origin
        while first + count <= low:
            if port == first + count:
                _check_ports(first, count)
                return first
            if _bindable(port):
                port += 1
            else:
                first = port = port + 1
    raise RuntimeError(
        f"no {count:,} consecutive free ports below the ephemeral range (from {low}): "
        "set BENCH_HOSTS or BENCH_HOSTS_FIRST_PORT"
    )


def _start_receiver(first: int, count: int) -> tuple[subprocess.Popen[bytes], int]:
    """The receiver on ``count`` ports from ``first``, and its control port."""
    receiver = subprocess.Popen(
        [sys.executable, "-m", "bench.many_ports_receiver", str(first), str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert receiver.stdout is not None
    assert receiver.stderr is not None
    line = receiver.stdout.readline().decode().split()
    if not line or line[0] != "ready":
        receiver.wait(10)
        raise RuntimeError(f"the receiver did not start: {receiver.stderr.read().decode()}")
    return receiver, int(line[1])


async def _stats(session: aiohttp.ClientSession, control: str) -> dict[str, int]:
    async with session.get(f"{control}/stats") as reply:
        return cast(dict[str, int], await reply.json(content_type=None))


async def _reset_peak(session: aiohttp.ClientSession, control: str) -> None:
    async with session.post(f"{control}/reset") as reply:
        await reply.read()


async def _until(
    what: str, count: Callable[[], Awaitable[int]], target: int, log: Process
) -> float:
    """Waits until ``count()`` reaches ``target``; returns the moment. Fails
    when the count stands still for STALL_SECONDS."""
    last, moved = -1, time.perf_counter()
    while (now := await count()) < target:
        if now != last:
            last, moved = now, time.perf_counter()
        elif time.perf_counter() - moved > STALL_SECONDS:
            tail = log.output()[-3000:]
            raise TimeoutError(f"{what}: stuck at {now} of {target}; dispatcher log:\n{tail}")
        await asyncio.sleep(0.02)
    return time.perf_counter()


async def _bounded(count: int, job: Callable[[int], Awaitable[None]]) -> float:
    """Runs ``job(i)`` for i in range(count), CALLERS at once; returns seconds."""
    numbers = iter(range(count))

    async def worker() -> None:
        for i in numbers:
            await job(i)

    began = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(CALLERS)])
    return time.perf_counter() - began


async def _run(tmp: Path, db_url: str, hosts: int) -> dict[str, Any]:
    first_port = _first_port(hosts)
    receiver, control_port = await asyncio.to_thread(_start_receiver, first_port, hosts)
    control = f"http://127.0.0.1:{control_port}"
    api_address = f"127.0.0.1:{free_port()}"
    env = await serve_env(db_url, tmp, api_address)
    await asyncio.to_thread(run_cli, ["migrate"], env)
    processes: list[Process] = [start(["serve"], env, tmp / "serve.log")]
    pg = await asyncpg.connect(db_url.replace("+asyncpg", ""))
    out: dict[str, Any] = {"hosts": hosts, "first_port": first_port, "rounds": []}
    try:
        await asyncio.to_thread(wait_for_grpc_health, api_address)
        channel = grpc.aio.insecure_channel(api_address)
        configs = cc_grpc.CallbackConfigServiceStub(channel)
        stub = nt_grpc.NotificationServiceStub(channel)

        async def attempts() -> int:
            return int(await pg.fetchval("SELECT count(*) FROM notification_attempts"))

        # 1. Setup: one partner, configuration and subscription per host.
        async def subscribe(i: int) -> None:
            url = f"http://127.0.0.1:{first_port + i}/hook"
            await _subscribed(configs, stub, f"partners/h-{i}", url, 10)

        out["setup_seconds"] = await _bounded(hosts, subscribe)

        async with aiohttp.ClientSession() as session:
            # 2. The dispatcher sends the N queued connectivity GETs.
            await _reset_peak(session, control)
            dispatcher = start(["dispatcher", "--workers", "1"], env, tmp / "dispatcher.log")
            processes.append(dispatcher)
            while " started on " not in dispatcher.output():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            pid = dispatcher.popen.pid
            began = time.perf_counter()

            async def gets() -> int:
                return (await _stats(session, control))["gets"]

            finished = await _until("connectivity GETs", gets, hosts, dispatcher)
            await _until("connectivity attempts recorded", attempts, hosts, dispatcher)
            stats = await _stats(session, control)
            out["connectivity_rate"] = hosts / (finished - began)
            out["connectivity_peak"] = stats["peak"]
            out["connectivity_live_peak"] = stats["live_peak"]
            out["rss_before_mib"] = _tree_rss_kib(pid)[0] / 1024

            # 3. Rounds: one event per partner, each to its own host.
            async def posts() -> int:
                return (await _stats(session, control))["posts"]

            for n in range(1, ROUNDS + 1):
                await _reset_peak(session, control)
                cpu_began = _tree_cpu_seconds(pid)

                async def publish(i: int, n: int = n) -> None:
                    request = nt.PublishEventRequest(
                        parent=f"partners/h-{i}",
                        event_type="GuestReviewSubmitted",
                        event_id=f"round{n}-{i}",
                        payload_json=PAYLOAD,
                    )
                    # grpc-stubs types aio stubs like blocking ones; the call is awaitable.
                    await cast(Awaitable[Any], stub.PublishEvent(request, metadata=METADATA))

                began = time.perf_counter()
                publish_seconds = await _bounded(hosts, publish)
                finished = await _until(f"round {n} POSTs", posts, n * hosts, dispatcher)
                recorded = (n + 1) * hosts  # the connectivity GETs', then n rounds'
                await _until(f"round {n} attempts recorded", attempts, recorded, dispatcher)
                stats = await _stats(session, control)
                rss, hwm = _tree_rss_kib(pid)
                out["rounds"].append(
                    {
                        "publish_rate": hosts / publish_seconds,
                        "rate": hosts / (finished - began),
                        "cpu_ms": (_tree_cpu_seconds(pid) - cpu_began) / hosts * 1000,
                        "peak": stats["peak"],
                        "live_peak": stats["live_peak"],
                        "rss_mib": rss / 1024,
                        "hwm_mib": hwm / 1024,
                    }
                )
            final = await _stats(session, control)
            out["connections"] = final["connections"]
            out["posts"] = final["posts"]
        out["failed_attempts"] = int(
            await pg.fetchval("SELECT count(*) FROM notification_attempts WHERE NOT succeeded")
        )
        await channel.close(None)
    finally:
        await pg.close()
        for process in reversed(processes):
            process.terminate()
        receiver.terminate()
        receiver.wait(10)
    return out


def _phases(r: dict[str, Any], key: str) -> str:
    """``key`` of the connectivity phase and of each round, " / "-joined."""
    return " / ".join(str(v) for v in [r[f"connectivity_{key}"], *(o[key] for o in r["rounds"])])


def _render(r: dict[str, Any], notes: list[str]) -> Section:
    hosts, rounds, first_port = r["hosts"], r["rounds"], r["first_port"]
    # The verdict's peak: connections the dispatcher had not closed yet (its
    # sockets still ESTABLISHED), not the receiver's own view, which also
    # holds closes its loop had not read yet.
    peak = max([r["connectivity_live_peak"], *(one["live_peak"] for one in rounds)])
    seen = max([r["connectivity_peak"], *(one["peak"] for one in rounds)])
    first, last = rounds[0]["rss_mib"], rounds[-1]["rss_mib"]
    growth = last - first
    allowed = max(8.0, 0.1 * first)
    flat = growth <= allowed
    bounded = peak <= LIMIT
    rss = " / ".join(f"{one['rss_mib']:.1f}" for one in rounds)
    lines = [
        f"{hosts:,} distinct callback hosts, all on 127.0.0.1: {hosts:,} distinct ports "
        f"({first_port}-{first_port + hosts - 1}, below the kernel's ephemeral range) of one "
        "receiver process (`bench.many_ports_receiver`: plain asyncio servers answering 200, "
        "keep-alive). The dispatcher's pool keys connections by (scheme, host, port) and its "
        "per-host cap by host:port, so to it each port is a host of its own: no connection "
        f"to one serves another. {hosts:,} partners, each with one configuration at its own "
        "port subscribed to GuestReviewSubmitted, on a fresh PostgreSQL database; "
        f"`hookkeeper dispatcher --workers 1` (concurrency {CONCURRENCY}, batch 100; its "
        f"pool holds at most max({CONCURRENCY}, 10) = {LIMIT} connections, closing the idle "
        "connection of another host to make room). The dispatcher first sends the "
        f"{hosts:,} connectivity GETs the configurations queued (a backlog), then {ROUNDS} "
        f"rounds of one event per partner ({hosts:,} PublishEvent calls, {CALLERS} at once; "
        "a round ends once the receiver counted its POSTs and the attempts are recorded; "
        "deliveries follow the publishing, so a round's rate is about PublishEvent's). "
        "The receiver counts the connections open at once over all its ports: as its loop "
        "sees them (opened when accepted, closed once it has read the close), and, at each "
        "accept, those the dispatcher has not closed yet (sockets still ESTABLISHED: a "
        "close reaches a loopback peer at once). Everything shares this machine's "
        f"{os.cpu_count()} CPUs.",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| callback hosts (ports of 127.0.0.1) | {hosts:,} |",
        f"| setup: {hosts:,} configurations and subscriptions, {CALLERS} at once (s) | "
        f"{r['setup_seconds']:.1f} |",
        f"| dispatcher connection limit, max(concurrency, 10) | {LIMIT} |",
        "| peak connections the dispatcher held open at once (receiver's sockets still "
        f"ESTABLISHED), connectivity GETs / rounds 1-{ROUNDS} | {_phases(r, 'live_peak')} |",
        "| peak connections open at once as the receiver's loop saw them, connectivity "
        f"GETs / rounds 1-{ROUNDS} | {_phases(r, 'peak')} |",
        f"| connections accepted in all ({hosts * (ROUNDS + 1):,} requests) | "
        f"{r['connections']:,} |",
        f"| connectivity GETs, a backlog (requests/s) | {r['connectivity_rate']:.0f} |",
        "| deliveries/s per round, first publish → last POST counted | "
        + " / ".join(f"{one['rate']:.0f}" for one in rounds)
        + " |",
        "| PublishEvent rate per round (events/s) | "
        + " / ".join(f"{one['publish_rate']:.0f}" for one in rounds)
        + " |",
        "| dispatcher CPU per delivery per round (ms) | "
        + " / ".join(f"{one['cpu_ms']:.2f}" for one in rounds)
        + " |",
        f"| dispatcher RSS after the connectivity GETs (MiB) | {r['rss_before_mib']:.1f} |",
        f"| dispatcher RSS after rounds 1-{ROUNDS}, and peak (MiB) | {rss} / "
        f"{rounds[-1]['hwm_mib']:.1f} |",
        f"| failed attempts | {r['failed_attempts']} |",
    ]
    if not bounded:
        lines += [
            "",
            f"Over the limit: {peak} connections were open at once ({seen} as the receiver "
            "saw them). The pool counts a connection out as soon as it drops it to make "
            "room, but `transport.abort()` closes the socket only on the loop's next "
            "iteration, while the replacement connects at once: for that iteration both "
            "are open, up to twice the limit when many deliveries swap hosts in one "
            "iteration. Checked apart from this run with the delivery client alone "
            "(`Sender(max_connections=64)`, 3,000 POSTs over 300 ports, 64 at once): the "
            "pool's size never passed 64 while up to 128 sockets were ESTABLISHED (114-120 "
            "under uvloop); shutting each socket down when the pool drops it kept asyncio's "
            "loop at 64.",
        ]
    if notes:
        lines += ["", *notes]
    if hosts < 10_000:
        lines += [
            "",
            f"The issue's figure is 10,000 hosts; this run used {hosts:,} (BENCH_HOSTS).",
        ]
    return Section(
        TITLE,
        "\n".join(lines),
        [
            (
                f"connection pool bounded: at most {LIMIT} connections open at once over "
                f"{hosts:,} hosts (peak {peak})",
                bounded,
            ),
            (
                f"dispatcher memory flat over rounds: RSS from round 1 to round {ROUNDS} grew "
                f"{growth:+.1f} MiB (at most max(8 MiB, 10 %) = {allowed:.1f} MiB)",
                flat,
            ),
        ],
    )


async def measure() -> Section:
    """Sets up N hosts, runs the connectivity checks and the rounds."""
    hosts, notes = _scale()
    url, database = await _create_database()
    try:
        tmp = Path(tempfile.mkdtemp(prefix="hookkeeper-bench-hosts-"))
        result = await _run(tmp, url, hosts)
        shutil.rmtree(tmp)  # kept, with the processes' logs, when the run failed
    finally:
        await drop_database(database)
    return _render(result, notes)


if __name__ == "__main__":
    section = asyncio.run(measure())
    print(section.body)
    for target, met in section.targets:
        print(f"{'yes' if met else 'NO '}  {target}")
