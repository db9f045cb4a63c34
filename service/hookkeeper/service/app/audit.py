"""The audit trail: recording events inside the transaction of the change
they describe, counting signatures, listing and verifying the chain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict
from datetime import datetime

from opentelemetry import trace

from hookkeeper.service.app import caller
from hookkeeper.service.app.context import AppContext
from hookkeeper.service.domain import audit, paging
from hookkeeper.service.domain.audit import AuditEvent, Draft, Problem
from hookkeeper.service.domain.errors import invalid
from hookkeeper.service.domain.principals import Principal, like_patterns
from hookkeeper.service.store import audit as store
from hookkeeper.service.store.database import Connection

_log = logging.getLogger(__name__)
_VERIFY_BATCH = 1000
# How often counted signatures of finished minutes are written.
FLUSH_SECONDS = 10.0


def _trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else ""


async def _append(
    conn: Connection, items: list[tuple[str, datetime, Draft]], trace_id: str
) -> None:
    previous = await store.lock_last(conn)
    rows = []
    for actor, at, draft in items:
        (event,) = audit.chain(previous, [draft], at=at, actor=actor, trace_id=trace_id)
        rows.append(asdict(event))
        previous = (event.seq, event.hash)
    await store.insert(conn, rows)


async def record(
    ctx: AppContext, conn: Connection, *drafts: Draft, actor: str | None = None
) -> None:
    """Appends events in ``conn``'s transaction, as the current caller. Call
    it last in the transaction: it holds the trail's append lock until commit."""
    name = actor or caller.current().name
    now = ctx.clock()
    await _append(conn, [(name, now, d) for d in drafts], _trace_id())


def _from_row(row: dict[str, object]) -> AuditEvent:
    return AuditEvent(**row)  # type: ignore[arg-type]


class AuditTrail:
    """Use cases of the audit trail."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    async def denied(self, actor: str, method: str, resource: str, partner: str | None) -> None:
        """Records a refused call in a transaction of its own."""
        draft = Draft(audit.CALL_DENIED, resource or method.lstrip("/"), partner, audit.DENIED)
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
            async with self._ctx.database.write() as conn:
                await _append(conn, [(actor, minute, d) for actor, minute, d in items], "")
        return len(items)

    async def run_flusher(self, stop: asyncio.Event) -> None:
        """Worker: writes counted signatures every few seconds, and all of them
        on stop (a failed write keeps nothing back from the next one)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FLUSH_SECONDS)
            try:
                await self.flush_signs(everything=stop.is_set())
            except Exception:
                _log.exception("could not write counted signatures to the audit trail")

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
        try:
            before = int(cursor.item_id) if cursor else None
        except ValueError:
            raise invalid("page_token", "is not a token returned by this method") from None
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
                before_seq=before,
                limit=size + 1,
            )
        events = [_from_row(r) for r in rows]
        page, more = events[:size], len(events) > size
        token = ""
        if more:
            last = paging.Cursor(page[-1].event_time, str(page[-1].seq))
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
        """Walks the whole chain; (events checked, breaks found)."""
        checked, problems = 0, list[Problem]()
        previous: tuple[int, str] | None = None
        while True:
            async with self._ctx.database.read() as conn:
                rows = await store.run(conn, previous[0] if previous else 0, _VERIFY_BATCH)
            if not rows:
                return checked, problems
            events = [_from_row(r) for r in rows]
            problems += list(audit.verify(events, previous))
            checked += len(events)
            previous = (events[-1].seq, events[-1].hash)
