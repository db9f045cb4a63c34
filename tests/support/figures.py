"""Figures a test measured (case counts, timings), printed at the end of the
run by tests/conftest.py's terminal summary, so they reach the report."""

from __future__ import annotations

FIGURES: list[tuple[str, str]] = []


def report(name: str, value: object) -> None:
    """Records one figure for the end-of-run summary."""
    FIGURES.append((name, str(value)))
