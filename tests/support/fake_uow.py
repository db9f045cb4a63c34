"""An in-memory unit of work for use-case tests that need no database.

``InMemoryConfigs`` keeps configurations and secrets in dicts and implements
the write side the use cases call (``ConfigWrites``); ``FakeUnitOfWork``
commits by copying its working set back, or drops it on error, so a failed
use case changes nothing, like a rolled-back transaction. ``committed_changes``
lists what each committed unit of work marked as changed.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

from hookkeeper.service.app.unit_of_work import UnitOfWork
from hookkeeper.service.crypto.keyring import Sealed
from hookkeeper.service.store.database import Connection
from hookkeeper.service.store.records import ConfigRecord, SecretRecord


@dataclass
class InMemoryConfigs:
    """Configurations and secrets in memory."""

    partners: set[str] = field(default_factory=set)
    configs: dict[str, ConfigRecord] = field(default_factory=dict)
    secrets: dict[str, SecretRecord] = field(default_factory=dict)

    async def ensure_partner(self, partner_id: str, now: datetime) -> None:
        """Adds the partner."""
        self.partners.add(partner_id)

    async def insert_config(self, record: ConfigRecord) -> None:
        """Stores a configuration."""
        self.configs[record.id] = record

    async def get_for_update(self, partner_id: str, config_id: str) -> ConfigRecord | None:
        """The partner's configuration, None if absent or another's."""
        record = self.configs.get(config_id)
        return record if record is not None and record.partner_id == partner_id else None

    async def update_config(self, config_id: str, values: Mapping[str, Any]) -> None:
        """Sets fields of a configuration."""
        self.configs[config_id] = replace(self.configs[config_id], **values)

    async def delete_config(self, config_id: str) -> None:
        """Deletes a configuration and its secrets."""
        del self.configs[config_id]
        for secret_id in [s.id for s in self.secrets.values() if s.callback_config_id == config_id]:
            del self.secrets[secret_id]

    async def insert_secret(self, record: SecretRecord) -> None:
        """Stores a secret."""
        self.secrets[record.id] = record

    async def lock_with_secrets(
        self, partner_id: str, config_id: str
    ) -> tuple[str, list[SecretRecord]] | None:
        """The configuration's signature scheme and secrets, None if absent or another's."""
        config = await self.get_for_update(partner_id, config_id)
        if config is None:
            return None
        secrets = [s for s in self.secrets.values() if s.callback_config_id == config_id]
        return config.signature_scheme, secrets

    async def retire_secrets(self, retirements: Mapping[str, datetime]) -> None:
        """Sets retire times."""
        for secret_id, when in retirements.items():
            self.secrets[secret_id] = replace(self.secrets[secret_id], retire_time=when)

    async def delete_secrets(self, secret_ids: Iterable[str]) -> None:
        """Deletes secrets."""
        for secret_id in secret_ids:
            del self.secrets[secret_id]

    async def sealed_under_other_keys(
        self, primary_key_id: str, limit: int
    ) -> tuple[list[ConfigRecord], list[SecretRecord]]:
        """Up to ``limit`` of each still sealed under another key."""
        configs = [c for c in self.configs.values() if c.api_key.key_id != primary_key_id]
        secrets = [s for s in self.secrets.values() if s.sealed.key_id != primary_key_id]
        return configs[:limit], secrets[:limit]

    async def reseal_secret(self, secret_id: str, sealed: Sealed) -> None:
        """Replaces a secret's ciphertext."""
        self.secrets[secret_id] = replace(self.secrets[secret_id], sealed=sealed)


class _NoConnection:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"conn.{name}: this use case needs a real database")


@dataclass
class FakeUnitOfWork:
    """One in-memory transaction over a working copy of the repository."""

    configs: InMemoryConfigs
    touched: set[str] = field(default_factory=set)

    @property
    def conn(self) -> Connection:
        """A stand-in that fails on use: use cases that need the other
        repositories need a database."""
        return cast(Connection, _NoConnection())

    def changed(self, config_id: str) -> None:
        """Records a changed configuration."""
        self.touched.add(config_id)


@dataclass
class FakeUnitsOfWork:
    """The factory an ``AppContext`` takes as ``units_of_work``."""

    configs: InMemoryConfigs = field(default_factory=InMemoryConfigs)
    committed_changes: list[set[str]] = field(default_factory=list)

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work whose changes count only if the block succeeds."""
        working = FakeUnitOfWork(copy.deepcopy(self.configs))
        yield working
        self.configs = working.configs
        self.committed_changes.append(working.touched)
