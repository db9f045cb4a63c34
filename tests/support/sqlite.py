"""Throw-away SQLite databases."""

from __future__ import annotations

from pathlib import Path


def sqlite_url(tmp_path: Path) -> str:
    """An SQLite file URL under a temporary folder."""
    return f"sqlite+aiosqlite:///{tmp_path / 'hookkeeper.db'}"
