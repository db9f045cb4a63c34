"""Repository functions for partner accounts and their hashed tokens.

Each takes the connection of a transaction opened by the caller.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookkeeper.service.store.change_feed import announce_revocation
from hookkeeper.service.store.partner_tables import partner_accounts, partner_tokens
from hookkeeper.service.store.records import AccountRecord

_accounts = partner_accounts.c
_tokens = partner_tokens.c


async def insert_account(conn: AsyncConnection, record: AccountRecord) -> None:
    """Inserts a partner account row (its `partners` row must exist)."""
    await conn.execute(
        insert(partner_accounts).values(
            partner_id=record.partner_id,
            display_name=record.display_name,
            create_time=record.create_time,
        )
    )


async def get_account(conn: AsyncConnection, partner_id: str) -> AccountRecord | None:
    """The account, or None."""
    row = (
        await conn.execute(select(partner_accounts).where(_accounts.partner_id == partner_id))
    ).first()
    if row is None:
        return None
    m = row._mapping
    return AccountRecord(m["partner_id"], m["display_name"], m["create_time"])


async def insert_token(
    conn: AsyncConnection, token_id: str, partner_id: str, digest: str, now: datetime
) -> None:
    """Stores a token's hash for the partner."""
    await conn.execute(
        insert(partner_tokens).values(
            id=token_id, partner_id=partner_id, token_sha256=digest, create_time=now
        )
    )


async def account_by_token(conn: AsyncConnection, digest: str) -> AccountRecord | None:
    """The account holding the unrevoked token with this hash, or None."""
    stmt = (
        select(partner_accounts)
        .join(partner_tokens, _tokens.partner_id == _accounts.partner_id)
        .where(_tokens.token_sha256 == digest, _tokens.revoke_time.is_(None))
    )
    row = (await conn.execute(stmt)).first()
    if row is None:
        return None
    m = row._mapping
    return AccountRecord(m["partner_id"], m["display_name"], m["create_time"])


async def revoke_by_hash(conn: AsyncConnection, digest: str, now: datetime) -> int:
    """Revokes the token with this hash; the number revoked (0 or 1). Every
    service replica hears of it when the transaction commits."""
    revoked = (
        await conn.execute(
            update(partner_tokens)
            .where(_tokens.token_sha256 == digest, _tokens.revoke_time.is_(None))
            .values(revoke_time=now)
            .returning(_tokens.partner_id)
        )
    ).all()
    for row in revoked:
        await announce_revocation(conn, row.partner_id)
    return len(revoked)


async def revoke_all(conn: AsyncConnection, partner_id: str, now: datetime) -> int:
    """Revokes every live token of the partner; how many (announced as above)."""
    result = await conn.execute(
        update(partner_tokens)
        .where(_tokens.partner_id == partner_id, _tokens.revoke_time.is_(None))
        .values(revoke_time=now)
    )
    if result.rowcount:
        await announce_revocation(conn, partner_id)
    return int(result.rowcount)


async def revoked_counts(conn: AsyncConnection) -> dict[str, int]:
    """How many revoked tokens each partner has (the SQLite revocation poll)."""
    rows = await conn.execute(
        select(_tokens.partner_id, func.count())
        .where(_tokens.revoke_time.is_not(None))
        .group_by(_tokens.partner_id)
    )
    return {partner_id: int(count) for partner_id, count in rows}
