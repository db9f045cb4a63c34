"""Throw-away PostgreSQL databases for tests and benchmarks.

The server comes from HOOKKEEPER_TEST_POSTGRES_URL (default: the local server
as user postgres, trust auth).
"""

from __future__ import annotations

import os
import uuid

import asyncpg
from sqlalchemy.engine import make_url

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
