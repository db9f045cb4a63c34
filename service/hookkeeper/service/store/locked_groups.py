"""Locked groups: read-modify-write units of work of concurrent callers in
one transaction (PostgreSQL).

An update, a delete or a refresh locks its configuration's row, reads it (a
refresh also reads its secrets), decides and writes. Alone, that is four or
five round trips, each through SQLAlchemy's execution path, and a commit per
call: most of those RPCs' CPU on the bench (docs/write-path.md). Here the
callers that arrive while a group is in flight form the next group (under
load it waits 1 ms more for stragglers, as the group commit does; when idle
it goes at once), and one transaction serves them all:

1. one statement locks every member's row, in id order, keyed by (partner,
   configuration), so a caller naming another partner's row locks nothing;
2. one statement reads the secrets of the members that asked for them, after
   the lock, so a refresh still plans against the state the previous refresh
   left (see ``callback_configs.lock_with_secrets``);
3. each member, in its own task, gets its row and decides; what it writes is
   queued (store/batch.py), not sent;
4. the members' statements go as one ``executemany`` per statement text, and
   the transaction commits; then each member returns.

What stays true:
- one row is in at most one member of a group: a second caller for the same
  configuration waits for the next group and sees the first one's commit;
- a member whose decision raises (not found, a bad field) writes nothing and
  the others go on;
- when the group's writes fail, nothing of it committed and each member is
  sent again alone: its row is locked anew and its statement runs only if
  the row (and its secrets) are still as it saw them; otherwise it fails
  with ``Unavailable`` (retryable), so nobody's decision is applied to a
  state it did not see, and a bad statement fails alone;
- a lost database is ``Unavailable`` for every member.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hookkeeper.service.domain.errors import Unavailable
from hookkeeper.service.store.callback_configs import lock_many, secrets_of_many
from hookkeeper.service.store.group_commit import GATHER_SECONDS, Gathering
from hookkeeper.service.store.records import ConfigRecord, SecretRecord

ConnectionFactory = Callable[[], AbstractAsyncContextManager[AsyncConnection]]
# A member's statement and its values, or None when it writes nothing.
Statement = tuple[str, Sequence[Any]] | None
Locked = tuple[ConfigRecord | None, list[SecretRecord]]

# Members per group: bounds how many rows one transaction holds locked.
MAX_GROUP = 64


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


@dataclass(eq=False)
class Member:
    """One caller's place in a group."""

    partner_id: str
    config_id: str
    with_secrets: bool
    # The row and secrets, once locked and read.
    locked: asyncio.Future[Locked] = field(default_factory=_future)
    # What the caller writes (set by ``submit`` or ``abandon``).
    submitted: asyncio.Future[Statement] = field(default_factory=_future)
    # Resolved once the group committed (or failed).
    committed: asyncio.Future[None] = field(default_factory=_future)
    # Abandoned: nobody awaits an answer (an error set on ``committed``
    # would be logged as never retrieved).
    gone: bool = False

    def submit(self, statement: Statement) -> None:
        """Hands the group this member's writes."""
        if not self.submitted.done():
            self.submitted.set_result(statement)

    def abandon(self) -> None:
        """This member writes nothing (it raised, or was cancelled) and waits
        for no answer."""
        self.gone = True
        self.submit(None)


class LockedGroups:
    """Forms groups of callers and runs one transaction per group.

    ``transaction`` opens a write transaction (``Database.write``).
    """

    def __init__(
        self,
        transaction: ConnectionFactory,
        *,
        max_group: int = MAX_GROUP,
        gather_seconds: float = GATHER_SECONDS,
    ) -> None:
        self._transaction = transaction
        self._max_group = max_group
        self._gathering = Gathering(gather_seconds)
        self._queue: list[Member] = []
        self._running: asyncio.Task[None] | None = None
        # Figures for tests and the bench.
        self.groups_run = 0
        self.members_run = 0

    async def join(self, partner_id: str, config_id: str, *, with_secrets: bool) -> Member:
        """Queues a caller; returns once its row is locked (``member.locked``
        holds the row, None when absent or another partner's, and secrets)."""
        member = Member(partner_id, config_id, with_secrets)
        self._queue.append(member)
        self._start()
        try:
            await member.locked
        except BaseException:
            member.abandon()
            raise
        return member

    def _start(self) -> None:
        if self._running is not None or not self._queue:
            return
        self._running = asyncio.create_task(self._gather_and_run())
        self._running.add_done_callback(self._finished)

    async def _gather_and_run(self) -> None:
        group = await self._gathering.take(self._take)
        if group:
            await self._run(group)

    def _finished(self, _task: asyncio.Task[None]) -> None:
        self._running = None
        self._start()

    def _take(self) -> list[Member]:
        """The next group: queued callers not cancelled, one per row; the
        others stay queued for a later group."""
        group: list[Member] = []
        rows: set[str] = set()
        rest: list[Member] = []
        for member in self._queue:
            if member.locked.done():
                continue  # cancelled while queued
            if member.config_id in rows or len(group) >= self._max_group:
                rest.append(member)
            else:
                rows.add(member.config_id)
                group.append(member)
        self._queue = rest
        return group

    async def _run(self, group: list[Member]) -> None:
        self.groups_run += 1
        self.members_run += len(group)
        seen: dict[Member, Locked] = {}
        try:
            async with self._transaction() as conn:
                seen = await _lock(conn, group)
                for member, locked in seen.items():
                    if not member.locked.done():
                        member.locked.set_result(locked)
                statements = await _decisions(group)
                await _send(conn, statements.values())
        except Unavailable as error:
            for member in group:
                _answer(member, Unavailable(str(error)))
            return
        except Exception as error:
            if not seen:
                for member in group:
                    _answer(member, error)
                return
            # The lock held and the writes (or the commit) failed: each
            # alone, if its row is still as it saw it.
            await self._one_by_one(seen, await _decisions(group))
            return
        except BaseException:
            for member in group:
                _answer(member, Unavailable("the service is stopping; retry later"))
            raise
        for member in group:
            _answer(member, None)

    async def _one_by_one(
        self, seen: dict[Member, Locked], statements: dict[Member, Statement]
    ) -> None:
        for member, statement in statements.items():
            if statement is None:
                _answer(member, None)
                continue
            try:
                async with self._transaction() as conn:
                    now = await _lock(conn, [member])
                    if now[member] != seen[member]:
                        raise Unavailable("the configuration changed meanwhile; retry")
                    await _send(conn, [statement])
            except Exception as error:
                _answer(member, error)
            else:
                _answer(member, None)


async def _lock(conn: AsyncConnection, group: list[Member]) -> dict[Member, Locked]:
    records = await lock_many(conn, [(m.partner_id, m.config_id) for m in group])
    wanted = [
        m.config_id for m in group if m.with_secrets and (m.partner_id, m.config_id) in records
    ]
    secrets = await secrets_of_many(conn, wanted) if wanted else {}
    return {
        m: (records.get((m.partner_id, m.config_id)), secrets.get(m.config_id, [])) for m in group
    }


async def _decisions(group: list[Member]) -> dict[Member, Statement]:
    # Every member submits or abandons: its unit of work does so on every exit.
    return {m: await m.submitted for m in group}


async def _send(conn: AsyncConnection, statements: Any) -> None:
    by_text: dict[str, list[Sequence[Any]]] = {}
    for statement in statements:
        if statement is not None:
            sql, values = statement
            by_text.setdefault(sql, []).append(tuple(values))
    for sql, rows in by_text.items():
        await conn.exec_driver_sql(sql, rows if len(rows) > 1 else rows[0])


def _answer(member: Member, error: BaseException | None) -> None:
    """Tells a member its outcome: at whichever step it waits (lock or
    commit); not at all when it was cancelled."""
    if error is not None and not member.locked.done():
        member.locked.set_exception(error)
    elif member.gone or member.committed.done():
        return
    elif error is None:
        member.committed.set_result(None)
    else:
        member.committed.set_exception(error)
