"""Use cases of partner accounts and their gateway tokens: create a partner,
issue, resolve and revoke tokens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from hookkeeper.service.app import audit as trail
from hookkeeper.service.app.context import AppContext
from hookkeeper.service.domain import audit
from hookkeeper.service.domain import partner_tokens as rules
from hookkeeper.service.domain.errors import NotFound
from hookkeeper.service.domain.names import partner_name
from hookkeeper.service.store import partners as store
from hookkeeper.service.store.callback_configs import ensure_partner
from hookkeeper.service.store.records import AccountRecord


@dataclass(frozen=True)
class Partner:
    """A partner account as callers see it."""

    partner_id: str
    display_name: str

    @property
    def name(self) -> str:
        """``partners/{partner}``."""
        return partner_name(self.partner_id)


@dataclass(frozen=True)
class Issued:
    """A partner and a token just issued to it (the only time it is shown)."""

    partner: Partner
    token: str

    def __repr__(self) -> str:
        return f"Issued(partner={self.partner!r}, token=<redacted>)"


class Partners:
    """Partner accounts and tokens over the store."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    async def create(self, display_name: str) -> Issued:
        """A new partner (and its notification profile) with a first token."""
        name = rules.check_display_name(display_name)
        partner = Partner(rules.new_partner_id(), name)
        token = rules.generate_token()
        now = self._ctx.clock()
        async with self._ctx.database.write() as conn:
            await ensure_partner(conn, partner.partner_id, now)
            await store.insert_account(
                conn, AccountRecord(partner.partner_id, partner.display_name, now)
            )
            await store.insert_token(
                conn, str(uuid.uuid4()), partner.partner_id, rules.token_hash(token), now
            )
            await trail.record(
                self._ctx,
                conn,
                audit.Draft(audit.PARTNER_CREATE, partner.name, partner.partner_id),
                audit.Draft(audit.PARTNER_TOKEN_ISSUE, partner.name, partner.partner_id),
            )
        return Issued(partner, token)

    async def issue_token(self, partner: str) -> Issued:
        """Another token for an existing partner (older ones stay valid)."""
        partner_id = rules.parse_partner_id(partner)
        token = rules.generate_token()
        now = self._ctx.clock()
        async with self._ctx.database.write() as conn:
            account = await store.get_account(conn, partner_id)
            if account is None:
                raise NotFound(partner_name(partner_id))
            await store.insert_token(
                conn, str(uuid.uuid4()), partner_id, rules.token_hash(token), now
            )
            await trail.record(
                self._ctx,
                conn,
                audit.Draft(audit.PARTNER_TOKEN_ISSUE, partner_name(partner_id), partner_id),
            )
        return Issued(Partner(account.partner_id, account.display_name), token)

    async def authenticate(self, token: str) -> Partner:
        """The partner holding ``token``; NotFound when none does."""
        if rules.looks_like_token(token):
            async with self._ctx.database.read() as conn:
                account = await store.account_by_token(conn, rules.token_hash(token))
            if account is not None:
                return Partner(account.partner_id, account.display_name)
        # Never echo the token: the message names nothing about it.
        raise NotFound("partner token")

    async def revoke_token(self, token: str) -> int:
        """Revokes one token; 1 if it was live, 0 if unknown or already revoked."""
        async with self._ctx.database.write() as conn:
            owner = await store.account_by_token(conn, rules.token_hash(token))
            count = await store.revoke_by_hash(conn, rules.token_hash(token), self._ctx.clock())
            if count and owner is not None:
                name = partner_name(owner.partner_id)
                await trail.record(
                    self._ctx,
                    conn,
                    audit.Draft(audit.PARTNER_TOKEN_REVOKE, name, owner.partner_id),
                )
            return count

    async def revoke_partner(self, partner: str) -> int:
        """Revokes every token of a partner; how many were live."""
        partner_id = rules.parse_partner_id(partner)
        async with self._ctx.database.write() as conn:
            if await store.get_account(conn, partner_id) is None:
                raise NotFound(partner_name(partner_id))
            count = await store.revoke_all(conn, partner_id, self._ctx.clock())
            if count:
                name = partner_name(partner_id)
                await trail.record(
                    self._ctx,
                    conn,
                    audit.Draft(audit.PARTNER_TOKEN_REVOKE, name, partner_id, count=count),
                )
            return count

    def watch_revocations(self, heartbeat_seconds: float) -> AsyncIterator[list[str]]:
        """Names of partners with tokens revoked, as it happens (see
        ``TokenRevocations.watch``); Unavailable while the feed is down."""
        return self._ctx.revocations.watch(heartbeat_seconds)
