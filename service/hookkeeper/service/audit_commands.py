"""``hookkeeper audit tail`` and ``hookkeeper audit verify``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from hookkeeper.service import bootstrap
from hookkeeper.service.app.audit import AuditTrail
from hookkeeper.service.domain.audit import AuditEvent
from hookkeeper.service.settings import Settings

T = TypeVar("T")


def _run(use: Callable[[AuditTrail], Awaitable[T]]) -> T:
    async def run() -> T:
        ctx = bootstrap.build_context(Settings())
        try:
            return await use(AuditTrail(ctx))
        finally:
            await ctx.database.close()

    return asyncio.run(run())


def _line(event: AuditEvent) -> str:
    count = f" x{event.count}" if event.count != 1 else ""
    trace = f" trace={event.trace_id}" if event.trace_id else ""
    seq = event.seq or "unsealed"
    return (
        f"{seq} {event.event_time:%Y-%m-%dT%H:%M:%S.%fZ} {event.actor} {event.action}"
        f"{count} {event.resource} {event.outcome}{trace}"
    )


@click.group()
def audit() -> None:
    """Read and verify the hash-chained audit trail (docs/security.md)."""


@audit.command("tail")
@click.option("-n", "--lines", default=20, show_default=True, help="How many recent events.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
def tail(lines: int, follow: bool, interval: float) -> None:
    """Print the newest events, oldest first: seq, time, actor, action, resource, outcome."""
    events = _run(lambda trail: trail.latest(max(lines, 1)))
    for event in events:
        click.echo(_line(event))
    last = events[-1].id if events else 0
    while follow:
        time.sleep(interval)
        newer = [e for e in _run(lambda trail: trail.latest(1000)) if e.id > last]
        for event in newer:
            click.echo(_line(event))
        last = newer[-1].id if newer else last


@audit.command("verify")
def verify() -> None:
    """Check the whole hash chain; exit 1 naming every altered or missing event."""
    checked, problems = _run(lambda trail: trail.verify())
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        raise click.ClickException(
            f"the audit trail is broken: {len(problems)} problem(s) in {checked} events"
        )
    click.echo(f"the audit trail is intact: {checked} events")
