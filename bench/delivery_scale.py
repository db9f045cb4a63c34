"""The delivery queue's claim as the queue grows (``BENCH_SCALE=1 make bench``).

Two PostgreSQL databases: one whose queue holds 100 due deliveries, one
holding BENCH_SCALE_DELIVERIES (default 1,000,000) pending deliveries, all
due (a backlog: the worst case for the claim). The dispatcher's own claim
on PostgreSQL (``delivery_queue.claim_plain``, one prepared statement, batch 100, in
a transaction rolled back so every round sees the same queue) is timed on
each, alternately; the big queue's median must stay within 1.25x of the
small one's. The plan of the claim statement is printed with EXPLAIN
(ANALYZE, BUFFERS), also rolled back.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.run import Section
from hookkeeper.service.store import delivery_queue, migrate
from hookkeeper.service.store.database import QUEUE_PLANNER_SETTINGS
from tests.support.postgres import create_database, drop_database

DELIVERIES = int(os.environ.get("BENCH_SCALE_DELIVERIES", "1000000"))
SMALL = 100
BATCH = 100
ROUNDS = 30

# Deliveries spread over 1,000 configurations that do not exist (the claim
# then leases them as it would a deleted configuration's: same statements).
_FILL = text(
    """
    INSERT INTO notification_deliveries
        (id, partner_id, kind, event_pk, callback_config_id, transaction_id, state,
         attempt_count, round_failures, next_attempt_time, create_time, update_time)
    SELECT md5(i::text || :salt), 'bench', 'CONNECTIVITY_CHECK', NULL,
           'cfg-' || (i % 1000), md5(i::text), 'PENDING', 0, 0,
           CAST(:start AS timestamptz) + i * interval '1 millisecond',
           CAST(:start AS timestamptz), CAST(:start AS timestamptz)
    FROM generate_series(1, :n) AS i
    """
)


async def _database(rows: int) -> tuple[str, str, AsyncEngine]:
    url, name = await create_database("hookkeeper_bench_queue")
    try:
        with ThreadPoolExecutor(1) as pool:
            await asyncio.get_running_loop().run_in_executor(pool, migrate.upgrade, url)
        # The planner settings of the dispatcher's queue connections
        # (Database.driver()), on which the claim runs.
        engine = create_async_engine(url, connect_args={"server_settings": QUEUE_PLANNER_SETTINGS})
        start = datetime.now(UTC) - timedelta(days=30)
        async with engine.begin() as conn:
            await conn.execute(_FILL, {"n": rows, "start": start, "salt": uuid.uuid4().hex})
            await conn.execute(text("ANALYZE notification_deliveries"))
    except BaseException:
        await drop_database(name)
        raise
    return url, name, engine


async def _claim_ms(engine: AsyncEngine) -> float:
    async with engine.connect() as conn:
        # The driver's connection, as the dispatcher's (Database.driver()).
        pg = (await conn.get_raw_connection()).driver_connection
        assert pg is not None
        transaction = pg.transaction()
        # BEGIN inside the timing, as through SQLAlchemy (which sends it with
        # the first statement), so the figures compare with earlier runs.
        began = time.perf_counter()
        await transaction.start()
        claimed, gated = await delivery_queue.claim_plain(
            pg,
            now=datetime.now(UTC),
            limit=BATCH,
            owner="bench",
            token=str(uuid.uuid4()),
            lease_margin=timedelta(seconds=30),
        )
        elapsed = (time.perf_counter() - began) * 1000
        await transaction.rollback()
    assert (len(claimed), gated) == (BATCH, 0)
    return elapsed


async def _plan(engine: AsyncEngine) -> str:
    """EXPLAIN ANALYZE of the claim statement (``delivery_queue.claim_statement``)
    in its generic plan, the one PostgreSQL settles on for the dispatcher's
    prepared statement after its first five runs; rolled back."""
    async with engine.connect() as conn:
        pg = (await conn.get_raw_connection()).driver_connection
        assert pg is not None
        await pg.execute(
            "PREPARE bench_claim(timestamptz, int, text[], text, text, text, interval) AS "
            + delivery_queue.claim_statement(BATCH)
        )
        transaction = pg.transaction()
        await transaction.start()
        await pg.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        rows = await pg.fetch(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE bench_claim"
            f"(now(), {BATCH}, '{{none}}', 'bench', 'token', 'DISABLED', '30 seconds')"
        )
        await transaction.rollback()
        await pg.execute("DEALLOCATE bench_claim")
    return "\n".join(r[0] for r in rows)


async def measure() -> Section:
    """Times the claim on a small and a big queue; prints the big one's plan."""
    small = await _database(SMALL)
    try:
        big = await _database(DELIVERIES)
    except BaseException:
        await small[2].dispose()
        await drop_database(small[1])
        raise
    try:
        times: dict[str, list[float]] = {"small": [], "big": []}
        for _ in range(3):  # warm both
            await _claim_ms(small[2])
            await _claim_ms(big[2])
        for _ in range(ROUNDS):
            times["small"].append(await _claim_ms(small[2]))
            times["big"].append(await _claim_ms(big[2]))
        plan = await _plan(big[2])
    finally:
        for _, name, engine in (small, big):
            await engine.dispose()
            await drop_database(name)
    s, b = statistics.median(times["small"]), statistics.median(times["big"])
    body = "\n".join(
        [
            f"The dispatcher's claim on PostgreSQL (`claim_plain`, one statement, {BATCH} "
            f"rows: lock due, lease, details, the batch's secrets), {ROUNDS} rounds each, "
            f"alternately, rolled back so each round sees the same queue.",
            "",
            "| queue | claim median (ms) | p90 (ms) |",
            "| --- | ---: | ---: |",
            f"| {SMALL} due deliveries | {s:.1f} | "
            f"{statistics.quantiles(times['small'], n=10)[-1]:.1f} |",
            f"| {DELIVERIES:,} due deliveries | {b:.1f} | "
            f"{statistics.quantiles(times['big'], n=10)[-1]:.1f} |",
            f"| ratio | {b / s:.2f} | |",
            "",
            "Plan of the claim statement on the big queue (its generic plan, which the "
            "dispatcher's prepared statement uses from its sixth run on):",
            "",
            "```",
            plan,
            "```",
        ]
    )
    return Section(
        "Delivery claim on a queue of a million",
        body,
        [(f"claim on {DELIVERIES:,} within 1.25x of a small queue ({b / s:.2f})", b <= 1.25 * s)],
    )


if __name__ == "__main__":
    print(asyncio.run(measure()).body)
