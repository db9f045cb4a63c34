"""Writes of one unit of work sent to PostgreSQL as one statement.

Inside a unit of work on PostgreSQL, the writes nobody reads back (inserts,
updates and deletes whose result the use case does not need) are queued with
``write`` instead of sent one by one; ``flush`` then sends them, with the
change-feed notifications, as a single statement of data-modifying CTEs
(``WITH w0 AS (INSERT ...), w1 AS (UPDATE ...) SELECT pg_notify(...)``).
Every round trip costs the server a socket write and a wake-up of the
database backend, and on a busy host that was most of a write RPC's time
(docs/write-path.md).

What stays true:
- atomicity: the statement runs in the unit of work's transaction, or, when
  nothing was sent before it (a create), alone in autocommit, where one
  statement is atomic by itself and saves BEGIN and COMMIT;
- order: reads of the repositories flush first (``flush``), so a read in a
  unit of work sees the writes queued before it;
- the parts touch different rows (PostgreSQL runs the CTEs against one
  snapshot, and one row changed twice in one statement is undefined): each
  use case queues at most one change per row;
- notifications are still sent by the transaction that commits the change.

A *blind* unit of work (one that only writes, such as a create) has no
connection at all on PostgreSQL: its writes are queued in a ``QueuedWrites``
and its one statement goes through the group commit (store/group_commit.py).

On SQLite, and outside a unit of work, ``write`` executes at once, as before.
Statements are compiled once per shape (statement, parameter names) and
PostgreSQL prepares the combined text once per connection (asyncpg's cache).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeAlias

from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.dml import UpdateBase

from hookkeeper.service.store.database import Connection

_KEY = "hookkeeper_write_batch"
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_DIALECT = postgresql.dialect(paramstyle="pyformat")  # type: ignore[no-untyped-call]
_compiled: dict[tuple[int, tuple[str, ...]], tuple[UpdateBase, str, dict[str, Any]]] = {}
# Per shape (statement, parameter names): the SQL as a template for its
# placeholder numbers, the names in placeholder order, the bound constants.
# Rendering a part is then a format call, not a regular-expression pass.
_shapes: dict[tuple[int, tuple[str, ...]], tuple[UpdateBase, str, list[str], dict[str, Any]]] = {}


class WriteBatch:
    """The queued writes and notifications of one unit of work."""

    def __init__(self) -> None:
        self.parts: list[tuple[UpdateBase, dict[str, Any]]] = []
        self.notices: list[tuple[str, str]] = []

    def __bool__(self) -> bool:
        return bool(self.parts or self.notices)


class QueuedWrites:
    """The writes of a blind unit of work on PostgreSQL, which holds no
    connection: repositories queue into it as into a connection's batch."""

    def __init__(self) -> None:
        self.batch = WriteBatch()


# Where the write functions of the repositories send their writes: a
# transaction's connection, or a blind unit of work's queue.
Writer: TypeAlias = Connection | QueuedWrites


def dialect_name(conn: Writer) -> str:
    """``postgresql`` or ``sqlite``: queues exist on PostgreSQL only."""
    return "postgresql" if isinstance(conn, QueuedWrites) else conn.dialect.name


def _batch_of(conn: Writer) -> WriteBatch | None:
    if isinstance(conn, QueuedWrites):
        return conn.batch
    batch: WriteBatch | None = conn.info.get(_KEY)
    return batch


def begin(conn: Connection) -> None:
    """Starts queueing ``conn``'s writes (PostgreSQL only; a no-op on SQLite)."""
    if conn.dialect.name == "postgresql":
        conn.info[_KEY] = WriteBatch()


def end(conn: Connection) -> None:
    """Stops queueing (the unit of work is over, committed or not)."""
    conn.info.pop(_KEY, None)


def queueing(conn: Writer) -> bool:
    """Whether ``conn``'s writes are being queued."""
    return _batch_of(conn) is not None


async def write(conn: Writer, statement: UpdateBase, params: Mapping[str, Any]) -> None:
    """Executes ``statement`` now, or queues it for the unit of work's flush.
    ``statement`` must be built once (a module constant), not per call."""
    batch = _batch_of(conn)
    if batch is None:
        assert not isinstance(conn, QueuedWrites)
        await conn.execute(statement, dict(params))
    else:
        batch.parts.append((statement, dict(params)))


async def notify(conn: Writer, channel: str, payload: str) -> bool:
    """Queues a NOTIFY for the flush; False when nothing queues (the caller
    sends it itself)."""
    batch = _batch_of(conn)
    if batch is None:
        return False
    batch.notices.append((channel, payload))
    return True


def _compile(statement: UpdateBase, keys: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """The statement's SQL with named placeholders, and the values bound in
    the statement itself (constants such as ``state=CANCELLED``)."""
    cache_key = (id(statement), keys)
    hit = _compiled.get(cache_key)
    # The statement is kept in the entry so its id cannot be reused.
    if hit is not None and hit[0] is statement:
        return hit[1], hit[2]
    compiled = statement.compile(dialect=_DIALECT, column_keys=list(keys))
    sql = str(compiled).replace("%%", "%")
    bound = dict(compiled.params)
    _compiled[cache_key] = (statement, sql, bound)
    return sql, bound


def _shape(
    statement: UpdateBase, params: Mapping[str, Any]
) -> tuple[str, list[str], dict[str, Any]]:
    """One part's SQL with ``{}`` where its positional number goes, the
    parameter names in placeholder order, and the constants bound in it."""
    keys = tuple(sorted(params))
    cache_key = (id(statement), keys)
    hit = _shapes.get(cache_key)
    # The statement is kept in the entry so its id cannot be reused.
    if hit is not None and hit[0] is statement:
        return hit[1], hit[2], hit[3]
    sql, bound = _compile(statement, keys)
    names = _PLACEHOLDER.findall(sql)
    template = _PLACEHOLDER.sub("{}", sql.replace("{", "{{").replace("}", "}}"))
    _shapes[cache_key] = (statement, template, names, bound)
    return template, names, bound


# Per batch shape (its statements with their parameter names, and how many
# notices): the whole statement's text and, per part, the names in
# placeholder order and the bound constants. The statements are module
# constants, hashed by identity and kept alive as keys. Rendering a batch is
# then collecting its values: 25 µs a delete before, most of it formatting.
_Rendered = tuple[str, list[tuple[list[str], dict[str, Any]]]]
_rendered: dict[tuple[Any, ...], _Rendered] = {}
_MAX_RENDERED = 4096


def _render_shape(batch: WriteBatch) -> _Rendered:
    ctes = []
    parts = []
    placed = 0
    for i, (statement, params) in enumerate(batch.parts):
        template, names, bound = _shape(statement, params)
        numbers = [f"${n}" for n in range(placed + 1, placed + 1 + len(names))]
        placed += len(names)
        ctes.append(f"w{i} AS ({template.format(*numbers)})")
        parts.append((names, bound))
    selects = [
        f"pg_notify(${placed + 2 * k + 1}, ${placed + 2 * k + 2})"
        for k in range(len(batch.notices))
    ]
    head = f"WITH {', '.join(ctes)} " if ctes else ""
    return f"{head}SELECT {', '.join(selects) or '1'}", parts


def render(batch: WriteBatch) -> tuple[str, list[Any]]:
    """The one statement of a batch and its positional parameters."""
    key = (len(batch.notices), *[(st, tuple(params)) for st, params in batch.parts])
    rendered = _rendered.get(key)
    if rendered is None:
        rendered = _render_shape(batch)
        if len(_rendered) < _MAX_RENDERED:
            _rendered[key] = rendered
    sql, parts = rendered
    values: list[Any] = []
    for (_, params), (names, bound) in zip(batch.parts, parts, strict=True):
        values.extend([params[n] if n in params else bound[n] for n in names])
    for channel, payload in batch.notices:
        values.extend((channel, payload))
    return sql, values


async def flush(conn: Connection, *, final: bool = False) -> None:
    """Sends what is queued as one statement (nothing when nothing is);
    ``final``: the unit of work commits next."""
    batch: WriteBatch | None = conn.info.get(_KEY)
    if not batch:
        return
    sql, values = render(batch)
    batch.parts, batch.notices = [], []
    raw = await conn.get_raw_connection()
    adapted = raw.dbapi_connection
    if (
        final
        and getattr(adapted, "_transaction", True) is None
        and not getattr(adapted, "autocommit", True)
    ):
        # Nothing was sent in this unit of work yet, so no BEGIN either: one
        # statement is atomic alone, and BEGIN/COMMIT would be two more round
        # trips. The driver runs this one statement in autocommit (SQLAlchemy
        # still maps its errors); the unit of work's commit has nothing to do.
        setattr(adapted, "autocommit", True)  # noqa: B010 (not in the DBAPI protocol)
        try:
            await conn.exec_driver_sql(sql, tuple(values))
        finally:
            setattr(adapted, "autocommit", False)  # noqa: B010
        return
    await conn.exec_driver_sql(sql, tuple(values))
