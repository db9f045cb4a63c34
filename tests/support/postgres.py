"""Throw-away PostgreSQL databases for tests and benchmarks.

The server comes from HOOKKEEPER_TEST_POSTGRES_URL (default: the local server
as user postgres, trust auth). When it is unreachable, :func:`require_postgres`
skips the test with the reason, except under CI=true, where that is an error:
CI must never skip the PostgreSQL cases.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.engine import make_url

from hookkeeper.service.store import migrate
from tests.support.ci import skip_or_fail

POSTGRES_ADMIN_URL = os.environ.get(
    "HOOKKEEPER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def create_database(prefix: str = "hookkeeper_test") -> tuple[str, str]:
    """Creates an empty database; returns (SQLAlchemy asyncpg URL, name)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False), name


async def drop_database(name: str) -> None:
    """Drops a database made by ``create_database``, closing its connections."""
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _postgres_reachable() -> str | None:
    try:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {error.__class__.__name__}"
    await conn.close()
    return None


_reason: list[str | None] = []


def postgres_unavailable() -> str | None:
    """None when PostgreSQL is reachable, else the reason (cached per run)."""
    if not _reason:
        # A thread of its own: callers may already be inside an event loop.
        with ThreadPoolExecutor(1) as pool:
            _reason.append(pool.submit(asyncio.run, _postgres_reachable()).result())
    return _reason[0]


def require_postgres() -> None:
    """Skips (or, under CI, fails) when PostgreSQL is unreachable."""
    reason = postgres_unavailable()
    if reason is not None:
        skip_or_fail(reason, "PostgreSQL")


@asynccontextmanager
async def migrated_postgres() -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database, dropped afterwards (skips, or
    fails under CI, when PostgreSQL is unreachable)."""
    require_postgres()
    url, name = await create_database()
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        yield url
    finally:
        await drop_database(name)
