"""Use cases of signing secrets: refresh and sign."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from hookkeeper.service.app import audit as trail
from hookkeeper.service.app.config_cache import read_through
from hookkeeper.service.app.context import AppContext, secret_aad
from hookkeeper.service.domain import audit, signing
from hookkeeper.service.domain import secrets as lifecycle
from hookkeeper.service.domain import standard_webhooks as swh
from hookkeeper.service.domain.callback_config import STANDARD_WEBHOOKS
from hookkeeper.service.domain.envelope import check_event_id
from hookkeeper.service.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from hookkeeper.service.domain.names import ConfigName
from hookkeeper.service.store import callback_configs as store
from hookkeeper.service.store.records import SecretRecord


@dataclass(frozen=True)
class Refreshed:
    """The outcome of a refresh; the new secret is shown once."""

    name: ConfigName
    secret: str
    secret_expire_time: datetime
    previous_secret_expire_time: datetime

    def __repr__(self) -> str:
        return f"Refreshed(name={self.name}, secret=<redacted>)"


@dataclass(frozen=True)
class Revoked:
    """The outcome of a revocation: the current secret signs alone."""

    name: ConfigName
    secret_expire_time: datetime


@dataclass(frozen=True)
class Signature:
    """What a sender puts in the timestamp and signature headers."""

    timestamp: str
    header: str
    # EXPEDIA_V2 or STANDARD_WEBHOOKS: which headers the two values go in.
    scheme: str = "EXPEDIA_V2"

    def headers(self, webhook_id: str) -> dict[str, str]:
        """The request headers that carry this signature."""
        if self.scheme == STANDARD_WEBHOOKS:
            return {
                swh.ID_HEADER: webhook_id,
                swh.TIMESTAMP_HEADER: self.timestamp,
                swh.SIGNATURE_HEADER: self.header,
            }
        return {signing.TIMESTAMP_HEADER: self.timestamp, signing.SIGNATURE_HEADER: self.header}


def new_secret(scheme: str) -> str:
    """A fresh secret in the scheme's format."""
    return swh.generate_secret() if scheme == STANDARD_WEBHOOKS else lifecycle.generate_secret()


def _period(record: SecretRecord) -> lifecycle.SecretPeriod:
    return lifecycle.SecretPeriod(
        record.id, record.create_time, record.expire_time, record.retire_time
    )


class OpenedSecrets:
    """Secrets decrypted for one batch of deliveries, kept only as long as the
    batch (never beyond): each secret by id, and each configuration's signing
    secrets, newest first, with the span of time they hold for (from, until;
    None: no end), so a batch's deliveries skip the lifecycle rules too."""

    def __init__(self) -> None:
        self.by_id: dict[str, str] = {}
        self.signing: dict[str, tuple[datetime, datetime | None, list[str]]] = {}

    def __len__(self) -> int:
        return len(self.by_id)

    def __repr__(self) -> str:
        return f"OpenedSecrets(<{len(self.by_id)} secrets>)"


class SecretRotation:
    """Refreshes secrets and signs with them."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    async def refresh(self, name: ConfigName, *, keep_existing: bool) -> Refreshed:
        """Issues a new secret under a row lock so concurrent refreshes serialise."""
        config_id = name.config_id
        locking = self._ctx.locked_unit_of_work(name.partner_id, config_id, with_secrets=True)
        async with locking as uow:
            if uow.record is None:
                raise NotFound(str(name))
            scheme, records = uow.record.signature_scheme, uow.secrets
            # The clock is read after the lock: a queued refresh plans against
            # the state the previous one left.
            now = self._ctx.clock()
            periods = [_period(r) for r in records]
            plan = lifecycle.plan_refresh(
                periods,
                now=now,
                keep_existing=keep_existing,
                validity=self._ctx.policy.secret_validity,
            )
            # Secrets that will never sign again are dropped, not kept as
            # ciphertext; the others get their new retire time.
            ended = lifecycle.ended_after(periods, plan, now)
            await uow.configs.delete_secrets(ended)
            await uow.configs.retire_secrets(
                {k: v for k, v in plan.retirements.items() if k not in ended}
            )
            secret = new_secret(scheme)
            secret_id = str(uuid.uuid4())
            await uow.configs.insert_secret(
                SecretRecord(
                    id=secret_id,
                    callback_config_id=config_id,
                    sealed=self._ctx.keyring.seal(
                        secret.encode(), secret_aad(secret_id, config_id)
                    ),
                    create_time=now,
                    expire_time=plan.new_expire_time,
                    retire_time=None,
                ),
            )
            await uow.configs.update_config(
                config_id, {"secret_expire_time": plan.new_expire_time, "update_time": now}
            )
            uow.changed(config_id)
            await trail.record(
                self._ctx, uow.conn, audit.Draft(audit.SECRET_REFRESH, str(name), name.partner_id)
            )
        return Refreshed(name, secret, plan.new_expire_time, plan.previous_end_time)

    async def revoke_previous(self, name: ConfigName) -> Revoked:
        """Ends the overlap now: the previous secret is deleted (it can never
        sign again), under the same row lock as refreshes."""
        locking = self._ctx.locked_unit_of_work(name.partner_id, name.config_id, with_secrets=True)
        async with locking as uow:
            if uow.record is None:
                raise NotFound(str(name))
            records = uow.secrets
            now = self._ctx.clock()
            periods = [_period(r) for r in records]
            ended = lifecycle.plan_revoke(periods, now)
            current = lifecycle.active_newest_first(periods, now)[0]
            await uow.configs.delete_secrets(ended)
            await uow.configs.update_config(name.config_id, {"update_time": now})
            uow.changed(name.config_id)
            await trail.record(
                self._ctx, uow.conn, audit.Draft(audit.SECRET_REVOKE, str(name), name.partner_id)
            )
        return Revoked(name, current.expire_time)

    async def sign(
        self, name: ConfigName, payload: bytes, at: datetime | None, webhook_id: str = ""
    ) -> Signature:
        """Signs ``payload`` with every secret active at the send time, in the
        configuration's scheme (Standard Webhooks needs ``webhook_id``)."""
        now = self._ctx.clock()
        scheme, records = await self._live_secrets(name, now)
        return self.sign_with(name, scheme, records, payload, at or now, webhook_id)

    def sign_with(
        self,
        name: ConfigName,
        scheme: str,
        records: Sequence[SecretRecord],
        payload: bytes,
        moment: datetime,
        webhook_id: str = "",
        opened: OpenedSecrets | None = None,
    ) -> Signature:
        """``sign`` from secrets already read (the dispatcher reads them with
        its claim). ``opened`` keeps what the caller's batch decrypted and
        chose, so each secret is decrypted once per batch, and the signing
        secrets of a configuration are chosen again only when one of its
        secrets starts or stops signing."""
        now = self._ctx.clock()
        if scheme == STANDARD_WEBHOOKS:
            violation = check_event_id(webhook_id, "webhook_id")
            if violation is not None:
                raise InvalidArgument([violation])
        secrets = self._signing_secrets(name.config_id, records, now, opened)
        if not secrets:
            raise FailedPrecondition(
                "the configuration's secret has expired; refresh it to sign again"
            )
        trail.AuditTrail(self._ctx).count_sign(str(name), name.partner_id)
        if scheme == STANDARD_WEBHOOKS:
            timestamp = swh.unix_seconds(moment)
            header = swh.sign(secrets, webhook_id, timestamp, payload)
            return Signature(timestamp, header, scheme)
        timestamp = signing.epoch_millis(moment)
        return Signature(timestamp, signing.sign(secrets, timestamp, payload), scheme)

    async def _live_secrets(
        self, name: ConfigName, now: datetime
    ) -> tuple[str, list[SecretRecord]]:
        async def load() -> tuple[str, list[SecretRecord]]:
            async with self._ctx.database.read() as conn:
                scheme, records = await store.live_secrets(
                    conn, name.partner_id, name.config_id, now
                )
            if scheme is None:
                raise NotFound(str(name))
            return scheme, records

        key = ("secrets", name.partner_id, name.config_id)
        return await read_through(self._ctx.cache, key, load)

    def _signing_secrets(
        self,
        config_id: str,
        records: Sequence[SecretRecord],
        now: datetime,
        opened: OpenedSecrets | None,
    ) -> list[str]:
        """The secrets that sign at ``now``, newest first, decrypted."""
        if opened is not None and (held := opened.signing.get(config_id)) is not None:
            since, until, secrets = held
            if since <= now and (until is None or now < until):
                return secrets
        active, until = lifecycle.signing_window([_period(r) for r in records], now)
        by_id = {r.id: r for r in records}
        secrets = [self._open(by_id[p.secret_id], opened) for p in active]
        if opened is not None:
            opened.signing[config_id] = (now, until, secrets)
        return secrets

    def _open(self, record: SecretRecord, opened: OpenedSecrets | None = None) -> str:
        if opened is not None and record.id in opened.by_id:
            return opened.by_id[record.id]
        aad = secret_aad(record.id, record.callback_config_id)
        secret = self._ctx.keyring.open(record.sealed, aad).decode()
        if opened is not None:
            opened.by_id[record.id] = secret
        return secret
