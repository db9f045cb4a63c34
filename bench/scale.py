"""Cost as the data grows (``BENCH_SCALE=1 make bench``).

Two PostgreSQL databases served side by side: one empty, one seeded with
1,000,000 configurations across 10,000 partners (``bench.scale_seed``: COPY,
every value sealed with its own row as associated data), one partner holding
10,000 of them. For Get, Sign and Create two load generators run at the same
time, one per database, one operation at a time, so both see the same
machine; p99 on the seeded database must stay within 1.25x of the empty
one's (each caller works on the configuration it created, in both). Get and
Sign are measured once more with the seeded side picking random rows from a
sample across the whole table, without a target. The read cache is off, so
every call reaches PostgreSQL. Then the big partner's 10,000
configurations are listed page by page (100 a page; every page's token is
collected once, then five walks fetch the pages in random orders): the last
ten pages must cost no more than 1.25x the first ten. The plans behind it are
printed with EXPLAIN (ANALYZE, BUFFERS) of the store's own statements.

BENCH_SCALE_CONFIGS and BENCH_SCALE_PARTNERS shrink the data for a quick try.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import event, text

from bench.grpc_api import TOKEN
from bench.run import Section
from bench.scale_seed import BIG_PARTNER, Plan, SeedReport, seed
from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.service.store import callback_configs as store
from hookkeeper.service.store import migrate
from hookkeeper.service.store.database import Database
from tests.support.postgres import create_database, drop_database
from tests.support.processes import (
    ROOT,
    Process,
    base_env,
    free_port,
    run_cli,
    start,
    wait_for_grpc_health,
)

CONFIGS = int(os.environ.get("BENCH_SCALE_CONFIGS", "1000000"))
PARTNERS = int(os.environ.get("BENCH_SCALE_PARTNERS", "10000"))
BIG = min(10_000, CONFIGS // 2)
CALLERS = 16
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
# Rounds per operation, both databases measured at once in each: on a shared,
# noisy machine one p99 says little; the median of several says more.
ROUNDS = int(os.environ.get("BENCH_SCALE_ROUNDS", "3"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "1.5"))
PAGE_SIZE = 100
WALKS = 5
LIMIT = 1.25
# (key, operation, label, seeded side reads random rows?, has a target?)
OPS = [
    ("get", "get", "GetCallbackConfig", False, True),
    ("sign", "sign", "SignNotification", False, True),
    ("create", "create", "CreateCallbackConfig", False, True),
    ("get-random", "get", "GetCallbackConfig, seeded side on random rows", True, False),
    ("sign-random", "sign", "SignNotification, seeded side on random rows", True, False),
]
AUTH = (("authorization", f"Bearer {TOKEN.split('=', 1)[1]}"),)


async def _load(api: str, pid: int, op: str, names_file: Path | None) -> dict[str, Any]:
    extra = ["--names-file", str(names_file)] if names_file else []
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.grpc_load",
        "--api",
        api,
        "--echo",
        api,  # unused: no echo op here
        "--token",
        TOKEN.split("=", 1)[1],
        "--concurrency",
        str(CALLERS),
        "--seconds",
        str(SECONDS),
        "--warmup",
        str(WARMUP),
        "--ops",
        op,
        "--api-pid",
        str(pid),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed: {stderr.decode()}")
    (result,) = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    return result  # type: ignore[no-any-return]


async def _page_costs(api: str, partner: str) -> list[float]:
    """Milliseconds per page, the median over the walks, in page order.

    One walk collects every page's token (a keyset cursor, reusable at will);
    then each walk fetches the pages in a fresh random order, so a busy
    moment on the machine lands on early and late pages alike instead of
    on whichever pages a sequential walk happened to be at.
    """
    async with grpc.aio.insecure_channel(api) as channel:
        stub = cc_grpc.CallbackConfigServiceStub(channel)

        async def page(token: str) -> tuple[float, cc.ListCallbackConfigsResponse]:
            request = cc.ListCallbackConfigsRequest(
                parent=f"partners/{partner}", page_size=PAGE_SIZE, page_token=token
            )
            began = time.perf_counter()
            reply = await stub.ListCallbackConfigs(request, metadata=AUTH)
            return (time.perf_counter() - began) * 1000, reply

        tokens, token, seen = [], "", 0
        while True:
            tokens.append(token)
            _, reply = await page(token)
            seen += len(reply.callback_configs)
            token = reply.next_page_token
            if not token:
                break
        if seen != BIG:
            raise RuntimeError(f"listed {seen} configurations of {partner}, expected {BIG}")
        costs: list[list[float]] = [[] for _ in tokens]
        rng = random.Random(11)
        for _ in range(WALKS):
            order = list(range(len(tokens)))
            rng.shuffle(order)
            for index in order:
                cost, _ = await page(tokens[index])
                costs[index].append(cost)
    return [statistics.median(page_costs) for page_costs in costs]


async def _explain(url: str, sample_name: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the statements the store runs for a Get,
    a Sign and the first and last list pages, captured as they execute."""
    _, partner, _, config_id = sample_name.split("/")
    database = Database(url, pool_size=1)
    captured: list[tuple[str, str, Any]] = []
    sections = []
    try:
        async with database.read() as conn:

            def capture(label: str) -> Callable[..., None]:
                def on_execute(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
                    captured.append((label, statement, params))

                return on_execute

            steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
                ("Get (store.get_config)", lambda: store.get_config(conn, partner, config_id)),
                (
                    "Sign (store.live_secrets)",
                    lambda: store.live_secrets(conn, partner, config_id, datetime.now(UTC)),
                ),
                (
                    "List, first page (store.list_configs)",
                    lambda: store.list_configs(conn, BIG_PARTNER, after=None, limit=PAGE_SIZE + 1),
                ),
            ]
            last = (
                await conn.execute(
                    text(
                        "SELECT create_time, id FROM callback_configs WHERE partner_id = :p "
                        "ORDER BY create_time, id OFFSET :n LIMIT 1"
                    ),
                    {"p": BIG_PARTNER, "n": BIG - PAGE_SIZE - 1},
                )
            ).one()
            steps.append(
                (
                    "List, last page (store.list_configs)",
                    lambda: store.list_configs(
                        conn, BIG_PARTNER, after=(last[0], last[1]), limit=PAGE_SIZE + 1
                    ),
                )
            )
            sync = conn.sync_connection
            assert sync is not None
            for label, step in steps:
                listener = capture(label)
                event.listen(sync, "before_cursor_execute", listener)
                try:
                    await step()
                finally:
                    event.remove(sync, "before_cursor_execute", listener)
            for label, statement, params in captured:
                rows = await conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params)
                plan = "\n".join(row[0] for row in rows)
                sections.append(f"{label}:\n\n```\n{plan}\n```")
    finally:
        await database.close()
    return "\n\n".join(sections)


def _env(url: str, tmp: Path, name: str, master_keys: str, api: str) -> dict[str, str]:
    return base_env(
        {
            "HOOKKEEPER_DATABASE_URL": url,
            "HOOKKEEPER_VAR_DIR": str(tmp / name),
            "HOOKKEEPER_MASTER_KEYS": master_keys,
            "HOOKKEEPER_SERVICE_TOKENS": TOKEN,
            "HOOKKEEPER_GRPC_LISTEN": api,
            # Every read reaches the database; no traffic leaves 127.0.0.1.
            "HOOKKEEPER_READ_CACHE_SECONDS": "0",
            "HOOKKEEPER_DISPATCHER_ENABLED": "false",
        }
    )


def _summary(rounds: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "rps": statistics.mean(r["rps"] for r in rounds),
        "p99_ms": statistics.median(r["p99_ms"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "cpu": statistics.median(r["server_cpu_ms"] or 0.0 for r in rounds),
    }


def _render(
    report: SeedReport,
    results: dict[tuple[str, str], list[dict[str, Any]]],
    pages: list[float],
    plans: str,
) -> Section:
    lines = [
        f"Seeded {report.configs:,} configurations ({BIG:,} of them one partner's) across "
        f"{PARTNERS:,} partners with COPY in {report.wall_seconds:.0f} s wall over "
        f"{report.processes} processes: building and sealing the rows took "
        f"{report.seal_cpu_seconds:.0f} s of CPU in all "
        f"({report.seal_cpu_seconds / report.configs * 1e6:.0f} µs a configuration, two "
        f"AES-GCM seals each), COPY {report.copy_seconds:.0f} s summed over "
        f"the processes, VACUUM ANALYZE {report.analyze_seconds:.0f} s.",
        "",
        f"{CALLERS} concurrent callers, {SECONDS:g} s per operation after {WARMUP:g} s, read "
        f"cache off; {ROUNDS} rounds per operation, the empty and the seeded database "
        "measured at the same time (two load generators), so both see the same machine; "
        "the table shows the median p99 and "
        "the mean rate over the rounds, and the serving process's CPU time per request "
        "(median over the rounds), the steadiest measure of cost on a busy machine. The "
        "first three rows are the same run on both databases (each caller works on the "
        "configuration it created at the start); the last two, without a target, have the "
        "seeded side read random rows from a sample across the whole table, a working set "
        "far larger than PostgreSQL's 128 MB of shared buffers, against the empty side's "
        "own rows.",
        "",
        f"This machine's {os.cpu_count()} CPUs are shared with PostgreSQL, the load generator "
        "and whatever else runs: the rounds' individual p99s are listed so the noise shows.",
        "",
        "| operation | empty req/s | empty p99 ms | seeded req/s | seeded p99 ms "
        "| p99 seeded / empty | server CPU ms/req, empty / seeded | errors "
        "| p99 per round, empty / seeded | req/s per round, empty / seeded |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    targets = []
    for op, _, label, _, has_target in OPS:
        empty, full = _summary(results[(op, "empty")]), _summary(results[(op, "seeded")])
        ratio = full["p99_ms"] / empty["p99_ms"]
        errors = empty["errors"] + full["errors"]
        pairs = list(zip(results[(op, "empty")], results[(op, "seeded")], strict=True))
        p99s = ", ".join(f"{a['p99_ms']:.0f}/{b['p99_ms']:.0f}" for a, b in pairs)
        rates = ", ".join(f"{a['rps']:.0f}/{b['rps']:.0f}" for a, b in pairs)
        lines.append(
            f"| {label} | {empty['rps']:.0f} | {empty['p99_ms']:.2f} | {full['rps']:.0f} "
            f"| {full['p99_ms']:.2f} | {ratio:.2f} | {empty['cpu']:.2f} / {full['cpu']:.2f} "
            f"| {errors:.0f} | {p99s} | {rates} |"
        )
        if has_target:
            targets.append(
                (
                    f"{label} p99 on {report.configs:,} configurations within {LIMIT}x of the "
                    f"empty database (measured {ratio:.2f})",
                    ratio <= LIMIT and not errors,
                )
            )
    first, last = statistics.mean(pages[:10]), statistics.mean(pages[-10:])
    lines += [
        "",
        f"Listing {BIG:,} configurations of one partner, {PAGE_SIZE} a page ({len(pages)} pages, "
        f"median of {WALKS} walks, each fetching the pages in a random order): first ten "
        f"pages {first:.2f} ms a page, last ten "
        f"{last:.2f} ms ({last / first:.2f}x); slowest page {max(pages):.2f} ms.",
        "",
        "The plans (EXPLAIN (ANALYZE, BUFFERS) of the store's own statements on the seeded "
        "database):",
        "",
        plans,
    ]
    targets.append(
        (
            f"the last list pages cost within {LIMIT}x of the first (measured {last / first:.2f})",
            last / first <= LIMIT,
        )
    )
    return Section(
        f"Cost as the data grows: {report.configs:,} configurations", "\n".join(lines), targets
    )


async def measure() -> Section:
    """Seeds, serves both databases, measures, and reports."""
    master_keys = (await asyncio.to_thread(run_cli, ["keys", "generate"], base_env({}))).strip()
    (empty_url, empty_db), (full_url, full_db) = [
        await create_database("hookkeeper_bench_scale") for _ in range(2)
    ]
    servers: list[Process] = []
    try:
        for url in (empty_url, full_url):
            await asyncio.to_thread(migrate.upgrade, url)
        print(f"bench.scale: seeding {CONFIGS:,} configurations ...", flush=True)
        report = await seed(full_url, master_keys, Plan(CONFIGS, PARTNERS, BIG))
        print(f"bench.scale: seeded in {report.wall_seconds:.0f} s", flush=True)
        with tempfile.TemporaryDirectory(prefix="hookkeeper-bench-scale-") as tmp_dir:
            tmp = Path(tmp_dir)
            names_file = tmp / "names.txt"
            names_file.write_text("\n".join(report.sample_names))
            apis = {}
            for name, url in (("empty", empty_url), ("seeded", full_url)):
                api = f"127.0.0.1:{free_port()}"
                env = _env(url, tmp, name, master_keys, api)
                servers.append(start(["serve", "--workers", "1"], env, tmp / f"{name}.log"))
                apis[name] = api
            for api in apis.values():
                await asyncio.to_thread(wait_for_grpc_health, api)
            results: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for key, op, _, spread, _ in OPS:
                for _ in range(ROUNDS):
                    # Both at once: whatever else loads the machine then loads
                    # the two measurements alike.
                    empty, seeded = await asyncio.gather(
                        _load(apis["empty"], servers[0].popen.pid, op, None),
                        _load(
                            apis["seeded"],
                            servers[1].popen.pid,
                            op,
                            names_file if spread else None,
                        ),
                    )
                    results.setdefault((key, "empty"), []).append(empty)
                    results.setdefault((key, "seeded"), []).append(seeded)
            pages = await _page_costs(apis["seeded"], BIG_PARTNER)
            plans = await _explain(full_url, report.sample_names[len(report.sample_names) // 2])
    finally:
        for server in servers:
            server.terminate()
        for database in (empty_db, full_db):
            await drop_database(database)
    return _render(report, results, pages, plans)
