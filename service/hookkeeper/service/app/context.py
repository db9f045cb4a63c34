"""What every use case needs: the database, the keyring, the clock, the policy."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property

from hookkeeper.service.app.config_cache import ConfigCache
from hookkeeper.service.app.token_revocations import TokenRevocations
from hookkeeper.service.app.unit_of_work import (
    BlindUnitOfWork,
    LockedUnitOfWork,
    UnitOfWork,
    UnitOfWorkFactory,
    locked_in,
    sql_blind_unit_of_work,
    sql_locked_unit_of_work,
    sql_unit_of_work,
)
from hookkeeper.service.crypto.keyring import Keyring
from hookkeeper.service.domain.audit import SignTally
from hookkeeper.service.domain.paging import PageTokens
from hookkeeper.service.store.database import Database
from hookkeeper.service.store.locked_groups import LockedGroups

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Policy:
    """Operator choices that shape the rules."""

    allow_insecure_callbacks: bool = False
    secret_validity: timedelta = timedelta(days=365)
    # A configuration whose every attempt failed this long is disabled.
    disable_after: timedelta = timedelta(hours=120)


@dataclass(frozen=True)
class AppContext:
    """Shared dependencies of the use cases."""

    database: Database
    keyring: Keyring
    policy: Policy
    clock: Clock = system_clock
    # Read cache for Get and Sign; None (or disabled) reads the database.
    cache: ConfigCache | None = None
    # Where write transactions come from; None: ``database.write()`` through
    # sql_unit_of_work. Tests pass an in-memory one.
    units_of_work: UnitOfWorkFactory | None = None
    # SignNotification uses not yet written to the audit trail (app/audit.py).
    sign_tally: SignTally = field(default_factory=SignTally, compare=False)
    # Token revocations for WatchTokenRevocations; live only while a source
    # runs (bootstrap.revocation_worker, part of `serve`).
    revocations: TokenRevocations = field(default_factory=TokenRevocations, compare=False)

    @cached_property
    def page_tokens(self) -> PageTokens:
        """Page tokens under keys derived from the master keyring: every
        replica with the same keyring reads every other's tokens."""
        return PageTokens(self.keyring.derive_keys(b"hookkeeper page tokens v1"))

    def unit_of_work(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A write transaction that announces and invalidates what it changed
        (app/unit_of_work.py)."""
        if self.units_of_work is not None:
            return self.units_of_work()
        return sql_unit_of_work(self.database, self.invalidate)

    def blind_unit_of_work(self) -> AbstractAsyncContextManager[BlindUnitOfWork]:
        """A unit of work that only inserts new rows, committed with those of
        concurrent callers (app/unit_of_work.py)."""
        if self.units_of_work is not None:
            return self.units_of_work()
        return sql_blind_unit_of_work(self.database)

    @cached_property
    def locked_groups(self) -> LockedGroups | None:
        """Where locked units of work meet on PostgreSQL; None on SQLite,
        where writers queue on the file lock anyway."""
        return None if self.database.is_sqlite else LockedGroups(self.database.write)

    def locked_unit_of_work(
        self, partner_id: str, config_id: str, *, with_secrets: bool = False
    ) -> AbstractAsyncContextManager[LockedUnitOfWork]:
        """A unit of work that changes one configuration: its row locked and
        read first (its secrets too with ``with_secrets``), then writes only;
        on PostgreSQL it shares a transaction with concurrent ones."""
        groups = None if self.units_of_work is not None else self.locked_groups
        if groups is None:
            return locked_in(self.unit_of_work, partner_id, config_id, with_secrets=with_secrets)
        return sql_locked_unit_of_work(
            groups, self.invalidate, partner_id, config_id, with_secrets=with_secrets
        )

    def invalidate(self, config_id: str) -> None:
        """Drops a changed configuration from this process's read cache."""
        if self.cache is not None:
            self.cache.invalidate(config_id)


def api_key_aad(config_id: str) -> bytes:
    """Associated data binding a sealed API key to its configuration row."""
    return f"callback_configs.api_key:{config_id}".encode()


def secret_aad(secret_id: str, config_id: str) -> bytes:
    """Associated data binding a sealed secret to its row and configuration."""
    return f"callback_secrets:{secret_id}:{config_id}".encode()
