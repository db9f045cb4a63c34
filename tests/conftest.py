"""Shared fixtures: a fresh database on SQLite and on PostgreSQL, the app
context, and an in-process gRPC server.

PostgreSQL comes from HOOKKEEPER_TEST_POSTGRES_URL (default: the local server
as user postgres). When it is unreachable its cases skip with the reason,
except under CI=true, where that is an error: CI must never skip them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.crypto.keyring import Keyring, generate_key_entry
from hookkeeper.service.store import migrate
from hookkeeper.service.store.database import Database
from tests.support.postgres import POSTGRES_ADMIN_URL
from tests.support.postgres import create_database as create_postgres_database
from tests.support.postgres import drop_database as drop_postgres_database

__all__ = ["POSTGRES_ADMIN_URL", "create_postgres_database", "drop_postgres_database"]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


class FakeClock:
    """A clock tests move by hand; starts at a fixed instant."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


async def _postgres_reachable() -> str | None:
    try:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {error.__class__.__name__}"
    await conn.close()
    return None


def postgres_unavailable() -> str | None:
    """None when PostgreSQL is reachable, else the reason (cached per run)."""
    if not hasattr(postgres_unavailable, "_reason"):
        # A thread of its own: callers may already be inside an event loop.
        with ThreadPoolExecutor(1) as pool:
            reason = pool.submit(asyncio.run, _postgres_reachable()).result()
        postgres_unavailable._reason = reason  # type: ignore[attr-defined]
    return postgres_unavailable._reason  # type: ignore[attr-defined,no-any-return]


def require_postgres() -> None:
    """Skips (or, under CI, fails) when PostgreSQL is unreachable."""
    reason = postgres_unavailable()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI requires PostgreSQL: {reason}")
    pytest.skip(reason)


def sqlite_url(tmp_path: Path) -> str:
    """An SQLite file URL under a temporary folder."""
    return f"sqlite+aiosqlite:///{tmp_path / 'hookkeeper.db'}"


@asynccontextmanager
async def migrated_postgres() -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database, dropped afterwards (skips, or
    fails under CI, when PostgreSQL is unreachable)."""
    require_postgres()
    url, name = await create_postgres_database()
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        yield url
    finally:
        await drop_postgres_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
        await asyncio.to_thread(migrate.upgrade, url)
        yield url
        return
    async with migrated_postgres() as url:
        yield url


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A migrated, empty PostgreSQL database (for PostgreSQL-only behaviour)."""
    async with migrated_postgres() as url:
        yield url


@pytest.fixture
def keyring_entry() -> str:
    """A fresh ``id:base64key`` keyring entry."""
    return generate_key_entry()


@pytest.fixture
def keyring(keyring_entry: str) -> Keyring:
    """A keyring with one fresh key."""
    return Keyring.parse(keyring_entry)


@pytest.fixture
def clock() -> FakeClock:
    """A hand-moved clock."""
    return FakeClock()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """The Database over ``database_url``."""
    db = Database(database_url, pool_size=5)
    yield db
    await db.close()


@pytest.fixture
def app_context(database: Database, keyring: Keyring, clock: FakeClock) -> AppContext:
    """Use-case dependencies over a fresh database with a fake clock."""
    return AppContext(database, keyring, Policy(allow_insecure_callbacks=False), clock)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return Path(__file__).resolve().parents[1]
