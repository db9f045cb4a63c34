"""The audit trail: recording events inside the transaction of the change
they describe, sealing them into the hash chain, counting signatures,
listing and verifying.

Recording is one INSERT in the change's transaction (no lock: writes stay
concurrent). Sealing runs apart, in ``serve``'s background worker every
``SEAL_SECONDS`` and before ``audit verify``: one sealer at a time takes the
committed, unsealed events in storage order and chains them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import fields
from datetime import datetime

from opentelemetry import trace

from hookkeeper.service.app import caller
from hookkeeper.service.app.context import AppContext
from hookkeeper.service.domain import audit, paging
from hookkeeper.service.domain.audit import AuditEvent, Draft, Problem
from hookkeeper.service.domain.errors import Unavailable
from hookkeeper.service.domain.principals import Principal, like_patterns
from hookkeeper.service.store import audit as store
from hookkeeper.service.store.batch import Writer

_log = logging.getLogger(__name__)
_VERIFY_BATCH = 1000
_SEAL_BATCH = 500
_MAX_RESOURCE = 512
# How often events are sealed, and counted signatures of finished minutes written.
SEAL_SECONDS = 0.5
FLUSH_SECONDS = 10.0
# Counted signatures written per statement. A minute of a dispatcher serving
# 10,000 configurations is 10,000 counts: written in one statement, their rows
# and its parameters took 6 MB at once, which the allocator kept after they
# were freed (the dispatcher's RSS rose 9 MiB at its first full minute).
_FLUSH_CHUNK = 500


def _trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else ""


# Every field but the storage id, which the database assigns. A shallow copy:
# ``dataclasses.asdict`` deep-copies each value, a measurable share of a write
# RPC's CPU (docs/write-path.md), and the values are immutable anyway.
_STORED = tuple(f.name for f in fields(AuditEvent) if f.name != "id")


def _row(event: AuditEvent) -> dict[str, object]:
    return {name: getattr(event, name) for name in _STORED}


async def _insert(conn: Writer, items: list[tuple[str, datetime, Draft]]) -> None:
    trace_id = _trace_id()
    await store.insert(
        conn,
        [_row(audit.pending(d, at=at, actor=actor, trace_id=trace_id)) for actor, at, d in items],
    )


async def record(ctx: AppContext, conn: Writer, *drafts: Draft, actor: str | None = None) -> None:
    """Appends events in ``conn``'s transaction, as the current caller (they
    commit or roll back with the change they describe)."""
    name = actor or caller.current().name
    now = ctx.clock()
    await _insert(conn, [(name, now, d) for d in drafts])


def _from_row(row: dict[str, object]) -> AuditEvent:
    return AuditEvent(**row)  # type: ignore[arg-type]


class AuditTrail:
    """Use cases of the audit trail."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    async def denied(self, actor: str, method: str, resource: str, partner: str | None) -> None:
        """Records a refused call in a transaction of its own."""
        # The caller chose the resource string: bounded, so a denied call
        # cannot store megabytes.
        named = (resource or method.lstrip("/"))[:_MAX_RESOURCE]
        draft = Draft(audit.CALL_DENIED, named, partner, audit.DENIED)
        async with self._ctx.database.write() as conn:
            await record(self._ctx, conn, draft, actor=actor)

    def count_sign(self, resource: str, partner_id: str) -> None:
        """Counts one SignNotification by the current caller (written per minute)."""
        self._ctx.sign_tally.add(caller.current().name, resource, partner_id, self._ctx.clock())

    async def flush_signs(self, *, everything: bool = False) -> int:
        """Writes the counts of finished minutes (all with ``everything``);
        how many events were written."""
        items = self._ctx.sign_tally.drain(None if everything else self._ctx.clock())
        if items:
            try:
                # One transaction (all counts or none, so a failure restores
                # them all), chunked statements (a small peak of memory).
                async with self._ctx.database.write() as conn:
                    for start in range(0, len(items), _FLUSH_CHUNK):
                        await _insert(conn, items[start : start + _FLUSH_CHUNK])
            except BaseException:
                self._ctx.sign_tally.restore(items)
                raise
        return len(items)

    async def seal_pending(self) -> int:
        """Seals every committed, unsealed event; how many. Returns at once
        (0) while another process seals."""
        total = 0
        while True:
            async with self._ctx.database.write() as conn:
                previous = await store.lock_last_sealed(conn)
                if previous is False:
                    return total
                assert previous is not True
                events = [_from_row(r) for r in await store.unsealed(conn, _SEAL_BATCH)]
                sealed = audit.seal(previous, events)
                await store.seal(
                    conn, [(e.id, int(e.seq or 0), str(e.prev_hash), str(e.hash)) for e in sealed]
                )
            total += len(sealed)
            if len(sealed) < _SEAL_BATCH:
                return total

    async def run(self, stop: asyncio.Event, *, seal: bool = True) -> None:
        """Worker of ``serve``: seals events every SEAL_SECONDS and writes
        counted signatures every FLUSH_SECONDS; on stop, all of them. Without
        ``seal``, the worker of ``hookkeeper dispatcher``, which signs but
        leaves sealing to ``serve``: it only writes its counted signatures
        (before, they never reached the trail and its tally grew by one entry
        per configuration and minute). A failed round is tried again next
        time (nothing is lost); a database outage is left to the health
        follower to report, anything else is logged once per run of failures."""
        flushed = time.monotonic()
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SEAL_SECONDS if seal else FLUSH_SECONDS)
            # Read once: a stop that arrives during this round's writes must
            # still get a last round that writes every count (it loops once more).
            stopping = stop.is_set()
            try:
                if stopping or time.monotonic() - flushed >= FLUSH_SECONDS:
                    await self.flush_signs(everything=stopping)
                    flushed = time.monotonic()
                if seal:
                    await self.seal_pending()
                failing = False
            except Unavailable:
                pass
            except Exception:
                if not failing:
                    _log.exception("could not seal the audit trail or write counted signatures")
                failing = True
            if stopping:
                return

    async def list_page(
        self,
        scope: Principal,
        partner_id: str | None,
        filter_text: str,
        page_size: int,
        page_token: str,
    ) -> tuple[list[AuditEvent], str]:
        """A page of events, newest first: of ``partner_id``, or (None) of every
        partner ``scope`` may see."""
        chosen = audit.parse_filter(filter_text)
        size = paging.page_size(page_size)
        # Bound to the caller too: another principal's token would page its view.
        token_scope = paging.list_scope(
            "ListAuditEvents", partner_id or "-", filter_text, scope.name
        )
        cursor = self._ctx.page_tokens.decode(page_token, token_scope)
        async with self._ctx.database.read() as conn:
            rows = await store.page(
                conn,
                partner_id=partner_id,
                partner_like=None if scope.all_partners else like_patterns(scope.partners),
                include_unowned=partner_id is None and scope.all_partners,
                resource=chosen.resource,
                action=chosen.action,
                start_time=chosen.start_time,
                end_time=chosen.end_time,
                before_id=int(cursor.item_id) if cursor else None,
                limit=size + 1,
            )
        events = [_from_row(r) for r in rows]
        page, more = events[:size], len(events) > size
        token = ""
        if more:
            last = paging.Cursor(page[-1].event_time, str(page[-1].id))
            token = self._ctx.page_tokens.encode(last, token_scope)
        if partner_id is None and not scope.all_partners:
            # LIKE may ignore case (SQLite); the globs decide.
            page = [e for e in page if e.partner_id and scope.allows_partner(e.partner_id)]
        return page, token

    async def latest(self, limit: int) -> list[AuditEvent]:
        """The newest ``limit`` events, oldest first."""
        async with self._ctx.database.read() as conn:
            return [_from_row(r) for r in await store.latest(conn, limit)]

    async def verify(self) -> tuple[int, list[Problem]]:
        """Seals what is pending, then walks the whole chain; (events
        checked, breaks found)."""
        await self.seal_pending()
        checked, problems = 0, list[Problem]()
        previous: tuple[int, str] | None = None
        while True:
            async with self._ctx.database.read() as conn:
                rows = await store.run(conn, previous[0] if previous else 0, _VERIFY_BATCH)
            if not rows:
                break
            events = [_from_row(r) for r in rows]
            problems += list(audit.verify(events, previous))
            checked += len(events)
            last = events[-1]
            previous = (int(last.seq or 0), str(last.hash))
        async with self._ctx.database.read() as conn:
            unsealed = await store.count_unsealed(conn)
        if unsealed:
            problems.append(Problem(0, f"{unsealed} events are not sealed yet (a sealer is busy)"))
        return checked, problems


__all__ = ["AuditTrail", "record"]
