"""Repository functions for partners, callback configurations and secrets.

Each takes the connection of a transaction opened by the caller, so a use case
composes several into one atomic unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Text,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from hookkeeper.service.crypto.keyring import Sealed
from hookkeeper.service.store import batch
from hookkeeper.service.store.batch import Writer
from hookkeeper.service.store.records import ConfigRecord, SecretRecord
from hookkeeper.service.store.tables import callback_configs, callback_secrets, partners

_configs = callback_configs.c
_secrets = callback_secrets.c

# Statements are built once, with bound parameters: building SQLAlchemy
# constructs per call was a large share of each write's CPU time.
_INSERT_CONFIG = insert(callback_configs)
_INSERT_SECRET = insert(callback_secrets)
_ENSURE_PARTNER = {
    "postgresql": postgresql.insert(partners).on_conflict_do_nothing(index_elements=["id"]),
    "sqlite": sqlite.insert(partners).on_conflict_do_nothing(index_elements=["id"]),
}
_GET_CONFIG = select(callback_configs).where(
    _configs.id == bindparam("config_id"), _configs.partner_id == bindparam("partner_id")
)
_GET_CONFIG_FOR_UPDATE = _GET_CONFIG.with_for_update()
_UPDATE_CONFIG = update(callback_configs).where(_configs.id == bindparam("b_config_id"))
_DELETE_SECRET = delete(callback_secrets).where(_secrets.id == bindparam("b_secret_id"))
_DELETE_SECRETS_OF = delete(callback_secrets).where(
    _secrets.callback_config_id == bindparam("b_config_id")
)
_DELETE_CONFIG = delete(callback_configs).where(_configs.id == bindparam("b_config_id"))
_RESEAL_SECRET = (
    update(callback_secrets)
    .where(_secrets.id == bindparam("b_secret_id"))
    .values(key_id=bindparam("b_key_id"), ciphertext=bindparam("b_ciphertext"))
)
_RETIRE_SECRET = (
    update(callback_secrets)
    .where(_secrets.id == bindparam("b_secret_id"))
    .values(retire_time=bindparam("retire_time"))
)
_LIST_SECRETS = select(callback_secrets).where(
    _secrets.callback_config_id == bindparam("config_id")
)
_LOCK_CONFIG = (
    select(_configs.id, _configs.signature_scheme)
    .where(_configs.id == bindparam("config_id"), _configs.partner_id == bindparam("partner_id"))
    .with_for_update()
)
_LIVE_SECRETS = (
    select(
        _configs.id.label("config_exists"),
        _configs.signature_scheme.label("config_scheme"),
        callback_secrets,
    )
    .select_from(
        callback_configs.outerjoin(
            callback_secrets,
            and_(
                _secrets.callback_config_id == _configs.id,
                _secrets.expire_time > bindparam("now"),
                or_(_secrets.retire_time.is_(None), _secrets.retire_time > bindparam("now")),
            ),
        )
    )
    .where(_configs.id == bindparam("config_id"), _configs.partner_id == bindparam("partner_id"))
)


def _config(row: Row[Any]) -> ConfigRecord:
    m = row._mapping
    return ConfigRecord(
        id=m["id"],
        partner_id=m["partner_id"],
        callback_url=m["callback_url"],
        contact_email=m["contact_email"],
        request_timeout_seconds=m["request_timeout_seconds"],
        api_key=Sealed(m["api_key_key_id"], m["api_key_ciphertext"]),
        secret_expire_time=m["secret_expire_time"],
        create_time=m["create_time"],
        update_time=m["update_time"],
        signature_scheme=m["signature_scheme"],
        state=m["state"],
        disable_reason=m["disable_reason"],
        disable_time=m["disable_time"],
        max_deliveries_per_second=m["max_deliveries_per_second"],
    )


def _secret(row: Row[Any]) -> SecretRecord:
    m = row._mapping
    return SecretRecord(
        id=m["id"],
        callback_config_id=m["callback_config_id"],
        sealed=Sealed(m["key_id"], m["ciphertext"]),
        create_time=m["create_time"],
        expire_time=m["expire_time"],
        retire_time=m["retire_time"],
    )


async def ensure_partner(conn: Writer, partner_id: str, now: datetime) -> None:
    """Creates the partner's notification profile unless it exists (race-free)."""
    await batch.write(
        conn, _ENSURE_PARTNER[batch.dialect_name(conn)], {"id": partner_id, "create_time": now}
    )


async def insert_config(conn: Writer, record: ConfigRecord) -> None:
    """Inserts a configuration row."""
    await batch.write(
        conn,
        _INSERT_CONFIG,
        {
            "id": record.id,
            "partner_id": record.partner_id,
            "callback_url": record.callback_url,
            "contact_email": record.contact_email,
            "request_timeout_seconds": record.request_timeout_seconds,
            "api_key_key_id": record.api_key.key_id,
            "api_key_ciphertext": record.api_key.blob,
            "secret_expire_time": record.secret_expire_time,
            "create_time": record.create_time,
            "update_time": record.update_time,
            "signature_scheme": record.signature_scheme,
            "state": record.state,
            "disable_reason": record.disable_reason,
            "disable_time": record.disable_time,
            "max_deliveries_per_second": record.max_deliveries_per_second,
        },
    )


async def get_config(
    conn: AsyncConnection, partner_id: str, config_id: str, *, for_update: bool = False
) -> ConfigRecord | None:
    """The partner's configuration, optionally row-locked; None if absent or not theirs."""
    await batch.flush(conn)
    stmt = _GET_CONFIG_FOR_UPDATE if for_update else _GET_CONFIG
    row = (await conn.execute(stmt, {"config_id": config_id, "partner_id": partner_id})).first()
    return _config(row) if row else None


async def list_configs(
    conn: AsyncConnection,
    partner_id: str,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[ConfigRecord]:
    """Up to ``limit`` configurations, oldest first, after a keyset cursor."""
    stmt = select(callback_configs).where(_configs.partner_id == partner_id)
    if after is not None:
        stmt = stmt.where(tuple_(_configs.create_time, _configs.id) > tuple_(*after))
    stmt = stmt.order_by(_configs.create_time, _configs.id).limit(limit)
    return [_config(row) for row in await conn.execute(stmt)]


async def update_config(conn: Writer, config_id: str, values: Mapping[str, Any]) -> None:
    """Updates columns of one configuration (``api_key`` given as Sealed)."""
    columns = dict(values)
    sealed = columns.pop("api_key", None)
    if isinstance(sealed, Sealed):
        columns["api_key_key_id"] = sealed.key_id
        columns["api_key_ciphertext"] = sealed.blob
    columns["b_config_id"] = config_id
    await batch.write(conn, _UPDATE_CONFIG, columns)


async def delete_config(conn: Writer, config_id: str) -> None:
    """Deletes a configuration and its secrets."""
    await batch.write(conn, _DELETE_SECRETS_OF, {"b_config_id": config_id})
    await batch.write(conn, _DELETE_CONFIG, {"b_config_id": config_id})


async def insert_secret(conn: Writer, record: SecretRecord) -> None:
    """Inserts a sealed secret."""
    await batch.write(
        conn,
        _INSERT_SECRET,
        {
            "id": record.id,
            "callback_config_id": record.callback_config_id,
            "key_id": record.sealed.key_id,
            "ciphertext": record.sealed.blob,
            "create_time": record.create_time,
            "expire_time": record.expire_time,
            "retire_time": record.retire_time,
        },
    )


async def list_secrets(conn: AsyncConnection, config_id: str) -> list[SecretRecord]:
    """Every stored secret of a configuration."""
    await batch.flush(conn)
    return [_secret(row) for row in await conn.execute(_LIST_SECRETS, {"config_id": config_id})]


async def live_secrets(
    conn: AsyncConnection, partner_id: str, config_id: str, now: datetime
) -> tuple[str | None, list[SecretRecord]]:
    """The partner's configuration's signature scheme (None when it does not
    exist), and its secrets not yet ended at ``now``, in one round trip."""
    await batch.flush(conn)
    params = {"config_id": config_id, "partner_id": partner_id, "now": now}
    rows = (await conn.execute(_LIVE_SECRETS, params)).all()
    if not rows:
        return None, []
    scheme = str(rows[0]._mapping["config_scheme"])
    return scheme, [_secret(row) for row in rows if row._mapping["id"] is not None]


_LIVE_SECRETS_OF = select(callback_secrets).where(
    _secrets.callback_config_id.in_(bindparam("config_ids", expanding=True)),
    _secrets.expire_time > bindparam("now"),
    or_(_secrets.retire_time.is_(None), _secrets.retire_time > bindparam("now")),
)


async def live_secrets_of(
    conn: AsyncConnection, config_ids: Iterable[str], now: datetime
) -> dict[str, list[SecretRecord]]:
    """The secrets not yet ended at ``now`` of many configurations, by
    configuration id, in one round trip (the dispatcher's claim)."""
    found: dict[str, list[SecretRecord]] = {c: [] for c in config_ids}
    if found:
        rows = await conn.execute(_LIVE_SECRETS_OF, {"config_ids": list(found), "now": now})
        for row in rows:
            record = _secret(row)
            found[record.callback_config_id].append(record)
    return found


async def lock_with_secrets(
    conn: AsyncConnection, partner_id: str, config_id: str
) -> tuple[str, list[SecretRecord]] | None:
    """Row-locks the partner's configuration, then reads its signature scheme
    and all its secrets; None when it does not exist or is not theirs.

    Two statements on purpose: under READ COMMITTED a locking read that waited
    for a concurrent refresh sees that refresh's commit only in statements
    started after the lock was granted. A join in the locking statement would
    read the secrets as they were before, and concurrent refreshes would
    stack up active secrets.
    """
    await batch.flush(conn)
    params = {"config_id": config_id, "partner_id": partner_id}
    locked = (await conn.execute(_LOCK_CONFIG, params)).first()
    if locked is None:
        return None
    return str(locked.signature_scheme), await list_secrets(conn, config_id)


# A group's rows (store/locked_groups.py), locked in id order: two groups
# wanting overlapping rows queue instead of deadlocking. Keyed by (id,
# partner) so a caller naming another partner's configuration locks nothing.
_KEYS = (
    func.unnest(
        bindparam("ids", type_=postgresql.ARRAY(Text)),
        bindparam("partners", type_=postgresql.ARRAY(Text)),
    )
    .table_valued("id", "partner_id")
    .render_derived(name="k", with_types=False)
)
_LOCK_MANY = (
    select(callback_configs)
    .join(_KEYS, and_(_configs.id == _KEYS.c.id, _configs.partner_id == _KEYS.c.partner_id))
    .order_by(_configs.id)
    .with_for_update(of=callback_configs)
)
_SECRETS_OF_MANY = (
    select(callback_secrets)
    .where(_secrets.callback_config_id == any_(bindparam("ids", type_=postgresql.ARRAY(Text))))
    .order_by(_secrets.id)
)


async def lock_many(
    conn: AsyncConnection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], ConfigRecord]:
    """Row-locks the configurations named by (partner id, configuration id)
    in one statement (PostgreSQL); those found, by key."""
    pairs = list(keys)
    params = {"ids": [c for _, c in pairs], "partners": [p for p, _ in pairs]}
    records = [_config(row) for row in await conn.execute(_LOCK_MANY, params)]
    return {(r.partner_id, r.id): r for r in records}


async def secrets_of_many(
    conn: AsyncConnection, config_ids: Iterable[str]
) -> dict[str, list[SecretRecord]]:
    """Every secret of each configuration, in one statement (PostgreSQL). Sent
    after ``lock_many`` for the reason ``lock_with_secrets`` gives."""
    found: dict[str, list[SecretRecord]] = {c: [] for c in config_ids}
    if found:
        for row in await conn.execute(_SECRETS_OF_MANY, {"ids": list(found)}):
            record = _secret(row)
            found[record.callback_config_id].append(record)
    return found


async def retire_secrets(conn: Writer, retirements: Mapping[str, datetime]) -> None:
    """Sets each secret's retire time."""
    for secret_id, when in retirements.items():
        await batch.write(conn, _RETIRE_SECRET, {"b_secret_id": secret_id, "retire_time": when})


async def delete_secrets(conn: Writer, secret_ids: Iterable[str]) -> None:
    """Deletes secrets that can never sign again."""
    for secret_id in secret_ids:
        await batch.write(conn, _DELETE_SECRET, {"b_secret_id": secret_id})


async def sealed_under_other_keys(
    conn: AsyncConnection, primary_key_id: str, limit: int
) -> tuple[list[ConfigRecord], list[SecretRecord]]:
    """Rows still sealed under an older key, a batch at a time, row-locked."""
    await batch.flush(conn)
    configs = await conn.execute(
        select(callback_configs)
        .where(_configs.api_key_key_id != primary_key_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    secrets = await conn.execute(
        select(callback_secrets)
        .where(_secrets.key_id != primary_key_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [_config(r) for r in configs], [_secret(r) for r in secrets]


async def reseal_secret(conn: AsyncConnection, secret_id: str, sealed: Sealed) -> None:
    """Replaces a secret's ciphertext (key rotation)."""
    params = {"b_secret_id": secret_id, "b_key_id": sealed.key_id, "b_ciphertext": sealed.blob}
    await batch.write(conn, _RESEAL_SECRET, params)


class ConfigWriter:
    """The write functions above, bound to a writer: a transaction, or a
    queue of writes with no connection yet (a blind unit of work's, or a
    locked group member's)."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    async def ensure_partner(self, partner_id: str, now: datetime) -> None:
        """See :func:`ensure_partner`."""
        await ensure_partner(self._writer, partner_id, now)

    async def insert_config(self, record: ConfigRecord) -> None:
        """See :func:`insert_config`."""
        await insert_config(self._writer, record)

    async def insert_secret(self, record: SecretRecord) -> None:
        """See :func:`insert_secret`."""
        await insert_secret(self._writer, record)

    async def update_config(self, config_id: str, values: Mapping[str, Any]) -> None:
        """See :func:`update_config`."""
        await update_config(self._writer, config_id, values)

    async def delete_config(self, config_id: str) -> None:
        """See :func:`delete_config`."""
        await delete_config(self._writer, config_id)

    async def retire_secrets(self, retirements: Mapping[str, datetime]) -> None:
        """See :func:`retire_secrets`."""
        await retire_secrets(self._writer, retirements)

    async def delete_secrets(self, secret_ids: Iterable[str]) -> None:
        """See :func:`delete_secrets`."""
        await delete_secrets(self._writer, secret_ids)


class ConfigRepository(ConfigWriter):
    """The write-side functions above, reads included, bound to one
    transaction's connection (what a unit of work hands its use case as
    ``uow.configs``)."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn)
        self._conn = conn

    async def get_for_update(self, partner_id: str, config_id: str) -> ConfigRecord | None:
        """The partner's configuration, row-locked; None if absent or not theirs."""
        return await get_config(self._conn, partner_id, config_id, for_update=True)

    async def lock_with_secrets(
        self, partner_id: str, config_id: str
    ) -> tuple[str, list[SecretRecord]] | None:
        """See :func:`lock_with_secrets`."""
        return await lock_with_secrets(self._conn, partner_id, config_id)

    async def sealed_under_other_keys(
        self, primary_key_id: str, limit: int
    ) -> tuple[list[ConfigRecord], list[SecretRecord]]:
        """See :func:`sealed_under_other_keys`."""
        return await sealed_under_other_keys(self._conn, primary_key_id, limit)

    async def reseal_secret(self, secret_id: str, sealed: Sealed) -> None:
        """See :func:`reseal_secret`."""
        await reseal_secret(self._conn, secret_id, sealed)
