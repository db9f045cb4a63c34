"""Use cases of callback configurations: create, get, list, update, delete."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypedDict

from hookkeeper.service.app import audit as trail
from hookkeeper.service.app import delivery_hooks, endpoint_health
from hookkeeper.service.app.config_cache import read_through
from hookkeeper.service.app.context import AppContext, api_key_aad, secret_aad
from hookkeeper.service.app.secret_rotation import new_secret
from hookkeeper.service.crypto.keyring import Sealed
from hookkeeper.service.domain import audit, paging
from hookkeeper.service.domain import callback_config as rules
from hookkeeper.service.domain.callback_config import CallbackConfig, ConfigFields
from hookkeeper.service.domain.endpoint_health import MANUAL_REASON
from hookkeeper.service.domain.errors import NotFound
from hookkeeper.service.domain.names import ConfigName, new_config_id
from hookkeeper.service.store import callback_configs as store
from hookkeeper.service.store.records import ConfigRecord, SecretRecord

_MAX_KNOWN_PARTNERS = 100_000


@dataclass(frozen=True)
class Created:
    """A new configuration and its first secret (shown once)."""

    config: CallbackConfig
    secret: str

    def __repr__(self) -> str:
        return f"Created(config={self.config!r}, secret=<redacted>)"


def to_domain(record: ConfigRecord) -> CallbackConfig:
    """The caller's view of a stored configuration."""
    return CallbackConfig(
        name=ConfigName(record.partner_id, record.id),
        callback_url=record.callback_url,
        contact_email=record.contact_email,
        request_timeout_seconds=record.request_timeout_seconds,
        secret_expire_time=record.secret_expire_time,
        create_time=record.create_time,
        update_time=record.update_time,
        signature_scheme=record.signature_scheme,
        state=record.state,
        disable_reason=record.disable_reason,
        disable_time=record.disable_time,
        max_deliveries_per_second=record.max_deliveries_per_second,
    )


class CallbackConfigs:
    """Creates and manages callback configurations."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        # Partners whose profile row this process has seen committed. Profiles
        # are never deleted, so a known partner needs no upsert on create.
        self._known_partners: set[str] = set()

    async def create(self, partner_id: str, values: ConfigFields) -> Created:
        """Validates, then stores the configuration and its first secret atomically."""
        rules.validate_new(values, allow_insecure=self._ctx.policy.allow_insecure_callbacks)
        now = self._ctx.clock()
        config_id = new_config_id()
        secret = new_secret(values.scheme)
        secret_id = str(uuid.uuid4())
        expire_time = now + self._ctx.policy.secret_validity
        keyring = self._ctx.keyring
        record = ConfigRecord(
            id=config_id,
            partner_id=partner_id,
            callback_url=values.callback_url,
            contact_email=values.contact_email,
            request_timeout_seconds=values.timeout,
            api_key=keyring.seal(values.api_key.encode(), api_key_aad(config_id)),
            secret_expire_time=expire_time,
            create_time=now,
            update_time=now,
            signature_scheme=values.scheme,
            max_deliveries_per_second=values.max_deliveries_per_second,
        )
        secret_record = SecretRecord(
            id=secret_id,
            callback_config_id=config_id,
            sealed=keyring.seal(secret.encode(), secret_aad(secret_id, config_id)),
            create_time=now,
            expire_time=expire_time,
            retire_time=None,
        )
        # A new configuration is in no cache: nothing to announce. Its rows
        # are all new, so the unit of work is blind (no reads, no connection
        # held) and commits with concurrent creates (store/group_commit.py).
        async with self._ctx.blind_unit_of_work() as uow:
            if partner_id not in self._known_partners:
                await uow.configs.ensure_partner(partner_id, now)
            await uow.configs.insert_config(record)
            await uow.configs.insert_secret(secret_record)
            await delivery_hooks.callback_url_set(uow.conn, partner_id, config_id, now)
            await trail.record(
                self._ctx,
                uow.conn,
                audit.Draft(
                    audit.CONFIG_CREATE, str(ConfigName(partner_id, config_id)), partner_id
                ),
            )
        if len(self._known_partners) >= _MAX_KNOWN_PARTNERS:
            self._known_partners.clear()
        self._known_partners.add(partner_id)
        return Created(to_domain(record), secret)

    async def get(self, name: ConfigName) -> CallbackConfig:
        """The configuration; NotFound when absent or another partner's."""

        async def load() -> ConfigRecord:
            async with self._ctx.database.read() as conn:
                record = await store.get_config(conn, name.partner_id, name.config_id)
            if record is None:
                raise NotFound(str(name))
            return record

        key = ("config", name.partner_id, name.config_id)
        return to_domain(await read_through(self._ctx.cache, key, load))

    async def list_page(
        self, partner_id: str, page_size: int, page_token: str
    ) -> tuple[list[CallbackConfig], str]:
        """A page of the partner's configurations and the next page's token."""
        size = paging.page_size(page_size)
        scope = paging.list_scope("ListCallbackConfigs", partner_id)
        cursor = self._ctx.page_tokens.decode(page_token, scope)
        after = (cursor.create_time, cursor.item_id) if cursor else None
        async with self._ctx.database.read() as conn:
            records = await store.list_configs(conn, partner_id, after=after, limit=size + 1)
        page, more = records[:size], len(records) > size
        token = ""
        if more:
            last = page[-1]
            token = self._ctx.page_tokens.encode(paging.Cursor(last.create_time, last.id), scope)
        return [to_domain(r) for r in page], token

    async def update(
        self, name: ConfigName, given: ConfigFields, mask: list[str]
    ) -> CallbackConfig:
        """Applies the masked fields after validating them; nothing changes on error."""
        names = rules.fields_to_update(mask, given)
        rules.validate_fields(
            given,
            names,
            allow_insecure=self._ctx.policy.allow_insecure_callbacks,
            prefix="callback_config.",
        )
        now = self._ctx.clock()
        async with self._ctx.locked_unit_of_work(name.partner_id, name.config_id) as uow:
            record = uow.record
            if record is None:
                raise NotFound(str(name))
            if not mask or "signature_scheme" in mask or mask == ["*"]:
                rules.check_scheme_unchanged(
                    record.signature_scheme,
                    given.signature_scheme,
                    "callback_config.signature_scheme",
                )
            changes = _column_values(self._ctx, record.id, given, names)
            if not changes:
                return to_domain(record)
            changes["update_time"] = now
            await uow.configs.update_config(record.id, changes)
            if changes.get("callback_url", record.callback_url) != record.callback_url:
                await delivery_hooks.callback_url_set(uow.conn, name.partner_id, record.id, now)
            uow.changed(record.id)
            await trail.record(
                self._ctx, uow.conn, audit.Draft(audit.CONFIG_UPDATE, str(name), name.partner_id)
            )
        # Derived rather than read back: the row lock kept everything else as read.
        return to_domain(replace(record, **changes))

    async def disable(self, name: ConfigName) -> CallbackConfig:
        """Disables the configuration by request (see app/endpoint_health.py)."""
        async with self._ctx.unit_of_work() as uow:
            record = await uow.configs.get_for_update(name.partner_id, name.config_id)
            if record is None:
                raise NotFound(str(name))
            await endpoint_health.disable(uow.conn, record.id, MANUAL_REASON, self._ctx.clock())
            record = await store.get_config(uow.conn, name.partner_id, name.config_id)
            uow.changed(name.config_id)
            await trail.record(
                self._ctx, uow.conn, audit.Draft(audit.CONFIG_DISABLE, str(name), name.partner_id)
            )
        assert record is not None
        return to_domain(record)

    async def enable(self, name: ConfigName) -> CallbackConfig:
        """Enables the configuration; its paused deliveries resume."""
        async with self._ctx.unit_of_work() as uow:
            record = await uow.configs.get_for_update(name.partner_id, name.config_id)
            if record is None:
                raise NotFound(str(name))
            await endpoint_health.enable(uow.conn, record.id, self._ctx.clock())
            record = await store.get_config(uow.conn, name.partner_id, name.config_id)
            uow.changed(name.config_id)
            await trail.record(
                self._ctx, uow.conn, audit.Draft(audit.CONFIG_ENABLE, str(name), name.partner_id)
            )
        assert record is not None
        return to_domain(record)

    async def delete(self, name: ConfigName) -> None:
        """Deletes the configuration and its secrets; NotFound when absent."""
        async with self._ctx.locked_unit_of_work(name.partner_id, name.config_id) as uow:
            record = uow.record
            if record is None:
                raise NotFound(str(name))
            await delivery_hooks.config_deleted(uow.conn, record.id, self._ctx.clock())
            await uow.configs.delete_config(record.id)
            uow.changed(record.id)
            await trail.record(
                self._ctx, uow.conn, audit.Draft(audit.CONFIG_DELETE, str(name), name.partner_id)
            )


class _Changes(TypedDict, total=False):
    """Columns an update sets, named as ConfigRecord's fields."""

    callback_url: str
    contact_email: str
    request_timeout_seconds: int
    api_key: Sealed
    update_time: datetime
    max_deliveries_per_second: int | None


def _column_values(
    ctx: AppContext, config_id: str, given: ConfigFields, names: tuple[str, ...]
) -> _Changes:
    values = _Changes()
    if "callback_url" in names:
        values["callback_url"] = given.callback_url
    if "contact_email" in names:
        values["contact_email"] = given.contact_email
    if "request_timeout_seconds" in names:
        values["request_timeout_seconds"] = given.timeout
    if "max_deliveries_per_second" in names:
        values["max_deliveries_per_second"] = given.max_deliveries_per_second
    if "api_key" in names:
        values["api_key"] = ctx.keyring.seal(given.api_key.encode(), api_key_aad(config_id))
    return values
