"""A unit of work: one write transaction, and which configurations it changed.

Use cases write inside ``async with ctx.unit_of_work() as uow`` and say what
they changed with ``uow.changed(config_id)``. The unit of work then announces
each changed configuration on the change feed inside the transaction (other
replicas hear of it when, and only if, it commits) and drops it from this
process's read cache after the commit (read-your-writes). Nobody writes that
announce/invalidate pair by hand any more, so a new write path cannot forget
half of it. (The pattern is cosmicpython's ``service_layer/unit_of_work.py``.)

``uow.configs`` is the configuration repository bound to the transaction;
``uow.conn`` the transaction itself, for the other repositories' functions.
Tests swap in an in-memory unit of work (``AppContext.units_of_work``).

A *locked* unit of work (``sql_locked_unit_of_work``) is one that changes
one configuration: it starts with that row locked and read (and its secrets,
when asked) and then only writes. On PostgreSQL, such units of work of
concurrent callers share one transaction (store/locked_groups.py).

A *blind* unit of work (``sql_blind_unit_of_work``) only writes new rows:
it reads nothing and changes no existing row, so it has nothing to announce
or invalidate, and on PostgreSQL it holds no connection while the use case
runs; its one statement commits with those of concurrent callers
(store/group_commit.py). A create is one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

from hookkeeper.service.crypto.keyring import Sealed
from hookkeeper.service.store import batch
from hookkeeper.service.store.batch import QueuedWrites, Writer
from hookkeeper.service.store.callback_configs import ConfigRepository, ConfigWriter
from hookkeeper.service.store.change_feed import announce
from hookkeeper.service.store.database import Connection, Database
from hookkeeper.service.store.locked_groups import LockedGroups
from hookkeeper.service.store.records import ConfigRecord, SecretRecord


class ConfigCreates(Protocol):
    """What a blind unit of work does to configurations: insert new rows."""

    async def ensure_partner(self, partner_id: str, now: datetime) -> None:
        """Creates the partner's row unless it exists."""

    async def insert_config(self, record: ConfigRecord) -> None:
        """Stores a new configuration."""

    async def insert_secret(self, record: SecretRecord) -> None:
        """Stores a new secret."""


class ConfigChanges(ConfigCreates, Protocol):
    """What a locked unit of work writes: no reads, the row is read already."""

    async def update_config(self, config_id: str, values: Mapping[str, Any]) -> None:
        """Sets columns of a configuration (named as ConfigRecord's fields)."""

    async def delete_config(self, config_id: str) -> None:
        """Deletes a configuration and its secrets."""

    async def retire_secrets(self, retirements: Mapping[str, datetime]) -> None:
        """Sets each secret's retire time."""

    async def delete_secrets(self, secret_ids: Iterable[str]) -> None:
        """Deletes secrets that can never sign again."""


class ConfigWrites(ConfigChanges, Protocol):
    """What write use cases do to configurations and secrets in a transaction."""

    async def get_for_update(self, partner_id: str, config_id: str) -> ConfigRecord | None:
        """The partner's configuration, row-locked; None if absent or not theirs."""

    async def lock_with_secrets(
        self, partner_id: str, config_id: str
    ) -> tuple[str, list[SecretRecord]] | None:
        """Row-locks the configuration, then reads its secrets; None if absent."""

    async def sealed_under_other_keys(
        self, primary_key_id: str, limit: int
    ) -> tuple[list[ConfigRecord], list[SecretRecord]]:
        """A batch of rows still sealed under an older key, row-locked."""

    async def reseal_secret(self, secret_id: str, sealed: Sealed) -> None:
        """Replaces a secret's ciphertext."""


class UnitOfWork(Protocol):
    """One write transaction as a use case sees it."""

    @property
    def configs(self) -> ConfigWrites:
        """The configuration repository, bound to this transaction."""

    @property
    def conn(self) -> Connection:
        """The transaction, for the other repositories' functions."""

    def changed(self, config_id: str) -> None:
        """Marks a configuration as changed: announced on commit, then
        dropped from this process's read cache."""


UnitOfWorkFactory = Callable[[], AbstractAsyncContextManager[UnitOfWork]]


class BlindUnitOfWork(Protocol):
    """A unit of work that only inserts new rows (see the module's text)."""

    @property
    def configs(self) -> ConfigCreates:
        """The configuration inserts, bound to this unit of work."""

    @property
    def conn(self) -> Writer:
        """Where the other repositories' write functions send their writes."""


class SqlUnitOfWork:
    """A unit of work over one ``Database.write()`` transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.configs = ConfigRepository(conn)
        self.touched: set[str] = set()

    def changed(self, config_id: str) -> None:
        """See :meth:`UnitOfWork.changed`."""
        self.touched.add(config_id)


@asynccontextmanager
async def sql_unit_of_work(
    database: Database, invalidate: Callable[[str], None]
) -> AsyncIterator[UnitOfWork]:
    """Opens a write transaction; on success announces what changed inside it,
    commits, then calls ``invalidate`` for each. On error nothing is announced
    (the transaction rolls back) and the cache keeps its entries, which the
    rolled-back transaction never changed."""
    async with database.write() as conn:
        # On PostgreSQL the writes wait and go with the announcements as one
        # statement (store/batch.py): fewer round trips per transaction.
        batch.begin(conn)
        try:
            uow = SqlUnitOfWork(conn)
            yield uow
            # Sorted: concurrent transactions notify in one order (no surprises).
            for config_id in sorted(uow.touched):
                await announce(conn, config_id)
            await batch.flush(conn, final=True)
        finally:
            batch.end(conn)
    for config_id in uow.touched:
        invalidate(config_id)


class SqlBlindUnitOfWork:
    """A blind unit of work's queue of writes (PostgreSQL)."""

    def __init__(self, queued: QueuedWrites) -> None:
        self.conn = queued
        self.configs = ConfigWriter(queued)


@asynccontextmanager
async def sql_blind_unit_of_work(database: Database) -> AsyncIterator[BlindUnitOfWork]:
    """Queues the block's writes and, when it succeeds, commits them as one
    statement through the group commit; on error nothing was sent. On SQLite,
    a write transaction like any other."""
    if database.group_commit is None:
        async with sql_unit_of_work(database, lambda _id: None) as uow:
            yield uow
        return
    queued = QueuedWrites()
    yield SqlBlindUnitOfWork(queued)
    if queued.batch:
        sql, values = batch.render(queued.batch)
        await database.group_commit.run(sql, values)


class LockedUnitOfWork(Protocol):
    """A unit of work over one configuration, its row locked and read."""

    @property
    def record(self) -> ConfigRecord | None:
        """The row as read under the lock; None when absent or not the partner's."""

    @property
    def secrets(self) -> list[SecretRecord]:
        """Its secrets, read after the lock (when asked for; else empty)."""

    @property
    def configs(self) -> ConfigChanges:
        """The configuration writes, bound to this unit of work."""

    @property
    def conn(self) -> Writer:
        """Where the other repositories' write functions send their writes."""

    def changed(self, config_id: str) -> None:
        """See :meth:`UnitOfWork.changed`."""


class LockedView:
    """A unit of work in which one row was locked and read (on SQLite and in
    tests: ``locked_in``)."""

    def __init__(
        self, uow: UnitOfWork, record: ConfigRecord | None, secrets: list[SecretRecord]
    ) -> None:
        self._uow = uow
        self.record = record
        self.secrets = secrets

    @property
    def configs(self) -> ConfigChanges:
        """See :attr:`LockedUnitOfWork.configs`."""
        return self._uow.configs

    @property
    def conn(self) -> Writer:
        """See :attr:`LockedUnitOfWork.conn`."""
        return self._uow.conn

    def changed(self, config_id: str) -> None:
        """See :meth:`UnitOfWork.changed`."""
        self._uow.changed(config_id)


@asynccontextmanager
async def locked_in(
    units: UnitOfWorkFactory, partner_id: str, config_id: str, *, with_secrets: bool
) -> AsyncIterator[LockedUnitOfWork]:
    """A locked unit of work inside an ordinary one: the row locked and read
    by its first statements."""
    async with units() as uow:
        record = await uow.configs.get_for_update(partner_id, config_id)
        secrets: list[SecretRecord] = []
        if record is not None and with_secrets:
            locked = await uow.configs.lock_with_secrets(partner_id, config_id)
            secrets = locked[1] if locked is not None else []
        yield LockedView(uow, record, secrets)


class SqlLockedUnitOfWork:
    """A member of a locked group: its row and secrets, and its queued writes."""

    def __init__(
        self, queued: QueuedWrites, record: ConfigRecord | None, secrets: list[SecretRecord]
    ) -> None:
        self.conn = queued
        self.configs = ConfigWriter(queued)
        self.record = record
        self.secrets = secrets
        self.touched: set[str] = set()

    def changed(self, config_id: str) -> None:
        """See :meth:`UnitOfWork.changed`."""
        self.touched.add(config_id)


@asynccontextmanager
async def sql_locked_unit_of_work(
    groups: LockedGroups,
    invalidate: Callable[[str], None],
    partner_id: str,
    config_id: str,
    *,
    with_secrets: bool,
) -> AsyncIterator[LockedUnitOfWork]:
    """Joins the next locked group (PostgreSQL); on success its writes and
    announcements commit with the group's, then ``invalidate`` runs for each
    changed configuration. On error nothing of it is written."""
    member = await groups.join(partner_id, config_id, with_secrets=with_secrets)
    record, secrets = member.locked.result()
    queued = QueuedWrites()
    work = SqlLockedUnitOfWork(queued, record, secrets)
    try:
        yield work
        # Sorted: concurrent transactions notify in one order (no surprises).
        for changed in sorted(work.touched):
            await announce(queued, changed)
    except BaseException:
        member.abandon()
        raise
    member.submit(batch.render(queued.batch) if queued.batch else None)
    await member.committed
    for changed in work.touched:
        invalidate(changed)
