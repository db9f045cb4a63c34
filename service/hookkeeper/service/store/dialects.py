"""Statements that differ per SQL dialect."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite


def insert_ignoring(table: Any, unique: list[str]) -> dict[str, Any]:
    """INSERT ... ON CONFLICT DO NOTHING per dialect name (a repeat is no error)."""
    return {
        name: dialect.insert(table).on_conflict_do_nothing(index_elements=unique)
        for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
    }
