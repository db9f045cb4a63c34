"""Shared fixtures: a fresh database on SQLite and on PostgreSQL, the app
context over it, a keyring and a hand-moved clock.

Only fixtures live here; the helpers they use (and tests import) are in
``tests/support/``. PostgreSQL comes from HOOKKEEPER_TEST_POSTGRES_URL (see
``tests/support/postgres.py``): unreachable, its cases skip with the reason,
except under CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.crypto.keyring import Keyring, generate_key_entry
from hookkeeper.service.store import migrate
from hookkeeper.service.store.database import Database
from tests.support.clock import FakeClock
from tests.support.figures import FIGURES
from tests.support.postgres import migrated_postgres
from tests.support.sqlite import sqlite_url


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Prints the figures tests measured (tests/support/figures.py)."""
    if FIGURES:
        terminalreporter.section("figures")
        for name, value in FIGURES:
            terminalreporter.write_line(f"{name}: {value}")
