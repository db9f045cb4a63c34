"""Group commit: concurrent blind writes sent to PostgreSQL together.

A *blind* unit of work only writes (a create reads nothing first), so its
whole transaction is one statement (store/batch.py). Sent alone, each such
statement costs a pool checkout, SQLAlchemy's execution path, a socket write
and a wake-up of the backend, and a WAL flush on commit: on this project's
bench that was most of a CreateCallbackConfig's CPU (docs/write-path.md).
Here the statements of callers that arrive while others are being sent wait
for the next send and go as one ``executemany`` (asyncpg pipelines the
executions and ends them with one Sync: one round trip, one implicit
transaction, one commit).

What stays true:
- a caller returns only after its statement committed, or raises;
- atomic per caller: when a group fails, nothing of it committed, and each
  of its statements is sent again alone, so a bad one fails by itself, with
  the error it would have had alone, and the others commit;
- no added wait when idle: a caller that finds the service idle (the last
  group was alone) is sent at once; under load, callers gather while a group
  is on the wire, and the next group waits ``GATHER_SECONDS`` (1 ms) more;
- a caller cancelled before its group is sent is dropped from it (nothing
  of it commits); one cancelled after that may still commit, exactly as a
  transaction cancelled while its COMMIT was on the wire;
- the database being down is ``Unavailable`` for every caller of the group,
  never retried statement by statement.

Statements in one group touch different rows: each is a create of rows with
fresh ids (callers with reads or updates keep their own transaction).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from hookkeeper.service.domain.errors import Unavailable

ConnectionFactory = Callable[[], AbstractAsyncContextManager[AsyncConnection]]
T = TypeVar("T")

# Statements per executemany: bounds one round trip's message and the work
# lost to one bad statement; 64 callers rarely queue more.
MAX_GROUP = 128
# Groups in flight at once. One leaves the pool idle while a group commits;
# more split the queue into smaller groups. Measured in docs/write-path.md.
MAX_IN_FLIGHT = 1
# How long a group waits for more callers while the service is busy (the
# last group was not alone): 1 ms took groups of creates at 64 callers from
# 3 to 6 and CreateCallbackConfig from 0.34 to 0.37 of the echo; 2 and 4 ms
# made larger groups and gained nothing more (docs/write-path.md).
GATHER_SECONDS = 0.001


class Gathering:
    """When the next group leaves: at once when idle (the last group was
    alone), after ``seconds`` under load, so the callers on their way join
    it: fewer, larger groups cost the server less per caller than the wait
    costs in latency."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._last_size = 0

    async def take(self, take: Callable[[], list[T]]) -> list[T]:
        """Waits as above, then takes the group with ``take``."""
        await asyncio.sleep(self._seconds if self._last_size > 1 else 0)
        group = take()
        self._last_size = len(group)
        return group


@dataclass
class _Pending:
    sql: str
    values: tuple[Any, ...]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit:
    """Sends concurrent single-statement transactions in groups.

    ``autocommit`` opens a connection on which each statement commits alone
    (``Database.autocommit``); ``transaction`` a transaction
    (``Database.write``), used when one group holds statements of different
    text.
    """

    def __init__(
        self,
        autocommit: ConnectionFactory,
        transaction: ConnectionFactory,
        *,
        max_group: int = MAX_GROUP,
        max_in_flight: int = MAX_IN_FLIGHT,
        gather_seconds: float = GATHER_SECONDS,
    ) -> None:
        self._autocommit = autocommit
        self._transaction = transaction
        self._max_group = max_group
        self._max_in_flight = max_in_flight
        self._gathering = Gathering(gather_seconds)
        self._queue: list[_Pending] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Figures for tests and the bench: how many groups went, with how many.
        self.groups_sent = 0
        self.statements_sent = 0

    async def run(self, sql: str, values: Sequence[Any]) -> None:
        """Commits one statement, with others waiting at the same time."""
        pending = _Pending(sql, tuple(values))
        self._queue.append(pending)
        self._start_sends()
        # Cancelling the caller cancels ``done``; a group not yet sent skips it.
        await pending.done

    def _start_sends(self) -> None:
        while self._queue and self._in_flight < self._max_in_flight:
            self._in_flight += 1
            task = asyncio.create_task(self._gather_and_send())
            self._tasks.add(task)
            task.add_done_callback(self._sent)

    async def _gather_and_send(self) -> None:
        group = await self._gathering.take(self._take)
        if group:
            await self._send(group)

    def _take(self) -> list[_Pending]:
        taken, self._queue = self._queue[: self._max_group], self._queue[self._max_group :]
        return [p for p in taken if not p.done.done()]

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        self._start_sends()

    async def _send(self, group: list[_Pending]) -> None:
        self.groups_sent += 1
        self.statements_sent += len(group)
        try:
            await self._execute(group)
        except Unavailable as error:
            _unavailable(group, str(error))
        except Exception:
            # Each is sent again alone and gets its own answer.
            await self._one_by_one(group)
        except BaseException:
            # Cancelled (shutdown): the callers must not wait forever.
            _unavailable(group, "the service is stopping; retry later")
            raise
        else:
            for pending in group:
                _answer(pending, None)

    async def _execute(self, group: list[_Pending]) -> None:
        by_text: dict[str, list[tuple[Any, ...]]] = {}
        for pending in group:
            by_text.setdefault(pending.sql, []).append(pending.values)
        # One text: executemany alone is one implicit transaction (asyncpg
        # ends the pipeline with one Sync). Several: one explicit transaction.
        opened = self._autocommit() if len(by_text) == 1 else self._transaction()
        async with opened as conn:
            for sql, rows in by_text.items():
                await conn.exec_driver_sql(sql, rows if len(rows) > 1 else rows[0])

    async def _one_by_one(self, group: list[_Pending]) -> None:
        for pending in group:
            try:
                async with self._autocommit() as conn:
                    await conn.exec_driver_sql(pending.sql, pending.values)
            except Exception as error:
                _answer(pending, error)
            else:
                _answer(pending, None)

    async def close(self) -> None:
        """Waits for the groups in flight (their callers get their answers)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _answer(pending: _Pending, error: BaseException | None) -> None:
    """Answers a caller still waiting (one cancelled is not)."""
    if pending.done.done():
        return
    if error is None:
        pending.done.set_result(None)
    else:
        pending.done.set_exception(error)


def _unavailable(group: list[_Pending], message: str) -> None:
    # One exception each: one instance raised in many tasks would share a traceback.
    for pending in group:
        _answer(pending, Unavailable(message))
