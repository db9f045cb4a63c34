"""Seeds a migrated PostgreSQL database with many configurations, fast.

Rows go in with COPY (asyncpg's ``copy_records_to_table``). Every API key and
secret is sealed exactly as the service seals it, with its own row as
associated data, so Get and Sign work on every seeded row; sealing is the
CPU-bound part, so it runs in one process per CPU, each sealing and copying
its own slice of the rows over its own connection.

One partner (``scale-big``) gets ``big`` configurations, spread evenly through
the table; the rest are spread evenly over the other partners.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy.engine import make_url

from hookkeeper.service.app.context import api_key_aad, secret_aad
from hookkeeper.service.crypto.keyring import Keyring
from hookkeeper.service.domain.secrets import generate_secret

BIG_PARTNER = "scale-big"
_BATCH = 20_000
_BASE = datetime(2026, 1, 1, tzinfo=UTC)
_CONFIG_COLUMNS = [
    "id",
    "partner_id",
    "callback_url",
    "contact_email",
    "request_timeout_seconds",
    "api_key_key_id",
    "api_key_ciphertext",
    "secret_expire_time",
    "create_time",
    "update_time",
]
_SECRET_COLUMNS = ["id", "callback_config_id", "key_id", "ciphertext", "create_time", "expire_time"]


@dataclass(frozen=True)
class Plan:
    """How many rows, for whom."""

    configs: int
    partners: int
    big: int

    def partner(self, i: int) -> str:
        """The partner of the ``i``-th configuration (in creation order): the
        big partner's are spread evenly through the table, as a partner's
        configurations made over years would be, not packed together."""
        stride = self.configs // self.big
        if i % stride == 0 and i // stride < self.big:
            return BIG_PARTNER
        return f"scale-{1 + i % (self.partners - 1):05d}"


@dataclass
class SeedReport:
    """What seeding took (wall seconds; sealing and COPY summed over processes)."""

    configs: int
    processes: int
    wall_seconds: float
    seal_cpu_seconds: float
    copy_seconds: float
    analyze_seconds: float
    sample_names: list[str]


def dsn(sqlalchemy_url: str) -> str:
    """The asyncpg DSN of a SQLAlchemy ``postgresql+asyncpg://`` URL."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


def _rows(
    plan: Plan, keyring: Keyring, start: int, stop: int
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[str]]:
    configs: list[tuple[object, ...]] = []
    secrets: list[tuple[object, ...]] = []
    names = []
    for i in range(start, stop):
        config_id, secret_id = str(uuid.uuid4()), str(uuid.uuid4())
        partner = plan.partner(i)
        created = _BASE + timedelta(seconds=i)
        expires = created + timedelta(days=365)
        api_key = keyring.seal(f"scale-api-key-{i:07d}".encode(), api_key_aad(config_id))
        secret = keyring.seal(generate_secret().encode(), secret_aad(secret_id, config_id))
        configs.append(
            (
                config_id,
                partner,
                f"https://hooks{i % 1000}.example.com/in",
                f"ops{i % 1000}@example.com",
                30,
                api_key.key_id,
                api_key.blob,
                expires,
                created,
                created,
            )
        )
        secrets.append((secret_id, config_id, secret.key_id, secret.blob, created, expires))
        if i % 200 == 0:
            names.append(f"partners/{partner}/callbackConfigs/{config_id}")
    return configs, secrets, names


async def _copy_slice(
    url: str, entry: str, plan: Plan, start: int, stop: int
) -> tuple[float, float, list[str]]:
    keyring = Keyring.parse(entry)
    conn = await asyncpg.connect(url)
    seal = copy = 0.0
    names: list[str] = []
    try:
        # A bulk load need not wait for each batch's WAL flush.
        await conn.execute("SET synchronous_commit = off")
        for batch in range(start, stop, _BATCH):
            began = time.process_time()
            configs, secrets, sample = _rows(plan, keyring, batch, min(batch + _BATCH, stop))
            seal += time.process_time() - began
            names += sample
            began = time.perf_counter()
            await conn.copy_records_to_table(
                "callback_configs", records=configs, columns=_CONFIG_COLUMNS
            )
            await conn.copy_records_to_table(
                "callback_secrets", records=secrets, columns=_SECRET_COLUMNS
            )
            copy += time.perf_counter() - began
    finally:
        await conn.close()
    return seal, copy, names


def _slice(args: tuple[str, str, Plan, int, int]) -> tuple[float, float, list[str]]:
    return asyncio.run(_copy_slice(*args))


async def seed(
    sqlalchemy_url: str, keyring_entry: str, plan: Plan, processes: int | None = None
) -> SeedReport:
    """Loads ``plan`` into the (migrated, empty) database; returns the timings
    and a sample of the seeded configurations' names."""
    url = dsn(sqlalchemy_url)
    processes = processes or os.cpu_count() or 1
    began = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        partners = [BIG_PARTNER] + [f"scale-{p:05d}" for p in range(1, plan.partners)]
        await conn.copy_records_to_table(
            "partners", records=[(p, _BASE) for p in partners], columns=["id", "create_time"]
        )
    finally:
        await conn.close()
    step = -(-plan.configs // processes)
    slices = [
        (url, keyring_entry, plan, start, min(start + step, plan.configs))
        for start in range(0, plan.configs, step)
    ]
    # Fresh interpreters: the parent may hold grpc or event-loop state that a
    # fork would copy half-way.
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(slices)) as pool:
        results = await asyncio.to_thread(pool.map, _slice, slices)
    loaded = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM (ANALYZE) partners, callback_configs, callback_secrets")
    finally:
        await conn.close()
    done = time.perf_counter()
    return SeedReport(
        configs=plan.configs,
        processes=len(slices),
        wall_seconds=done - began,
        seal_cpu_seconds=sum(r[0] for r in results),
        copy_seconds=sum(r[1] for r in results),
        analyze_seconds=done - loaded,
        sample_names=[name for r in results for name in r[2]],
    )
