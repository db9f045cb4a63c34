"""The expiry-warning mailer: schedules due warnings, claims them, sends them.

Runs inside ``hookkeeper serve`` and alone as ``hookkeeper mailer``; any
number of mailers may share one PostgreSQL database (see
service/store/expiry_warnings.py for how they avoid sending twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

from hookkeeper.service import telemetry
from hookkeeper.service.app.context import AppContext
from hookkeeper.service.domain.errors import Unavailable
from hookkeeper.service.domain.expiry_warnings import HORIZON, Backoff, due_threshold
from hookkeeper.service.domain.names import ConfigName
from hookkeeper.service.mail.disable_notice import DisableFacts
from hookkeeper.service.mail.disable_notice import compose as compose_notice
from hookkeeper.service.mail.message import WarningFacts, compose
from hookkeeper.service.store import endpoint_health as notice_store
from hookkeeper.service.store import expiry_warnings as store
from hookkeeper.service.store.records import ClaimedWarning

_log = logging.getLogger(__name__)


class Transport(Protocol):
    """Something that sends an e-mail (SMTP in production)."""

    async def send(self, message: EmailMessage) -> None:
        """Sends or raises."""


class ExpiryMailer:
    """Sends each (secret, threshold) warning once, retrying failures with backoff."""

    def __init__(
        self,
        ctx: AppContext,
        transport: Transport,
        mail_from: str,
        *,
        poll_seconds: float = 60.0,
        backoff: Backoff | None = None,
        lease: timedelta = timedelta(minutes=5),
        batch_size: int = 50,
    ) -> None:
        self._ctx = ctx
        self._transport = transport
        self._mail_from = mail_from
        self._poll_seconds = poll_seconds
        self._backoff = backoff or Backoff(timedelta(seconds=30), timedelta(hours=1))
        self._lease = lease
        self._batch_size = batch_size

    async def run(self, stop: asyncio.Event) -> None:
        """Polls until ``stop`` is set; a failed pass is logged and retried next poll."""
        _log.info("expiry mailer started (poll every %.1fs)", self._poll_seconds)
        while not stop.is_set():
            try:
                await self.run_once(stop)
            except Unavailable:
                pass  # logged once by the database's availability; next poll retries
            except Exception:
                _log.exception("expiry mailer pass failed; trying again at the next poll")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_seconds)
        _log.info("expiry mailer stopped")

    async def run_once(self, stop: asyncio.Event | None = None) -> int:
        """One pass: schedule what became due, send what is due; returns how many went."""
        await self.schedule(self._ctx.clock())
        sent = 0
        while stop is None or not stop.is_set():
            now = self._ctx.clock()
            async with self._ctx.database.write() as conn:
                claims = await store.claim_due(conn, now, self._lease, self._batch_size)
            for claim in claims:
                # Finish the batch even when asked to stop: each send is short
                # and a claimed warning left unsent would wait for its lease.
                sent += await self._send(claim)
            if len(claims) < self._batch_size:
                break
        return sent + await self.send_notices(stop)

    async def send_notices(self, stop: asyncio.Event | None = None) -> int:
        """Sends the due disable notices (each exactly once: its row is
        written in the same transaction as the disablement); how many went."""
        sent = 0
        while stop is None or not stop.is_set():
            async with self._ctx.database.write() as conn:
                claims = await notice_store.claim_notices(
                    conn, self._ctx.clock(), self._lease, self._batch_size
                )
            for claim in claims:
                sent += await self._send_notice(claim)
            if len(claims) < self._batch_size:
                break
        return sent

    async def _send_notice(self, claim: notice_store.ClaimedNotice) -> int:
        facts = DisableFacts(
            name=ConfigName(claim.partner_id, claim.callback_config_id),
            callback_url=claim.callback_url,
            contact_email=claim.contact_email,
            reason=claim.reason,
            disable_time=claim.create_time,
        )
        try:
            await self._transport.send(compose_notice(facts, self._mail_from, self._ctx.clock()))
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            retry_at = self._ctx.clock() + self._backoff.delay(claim.attempts)
            reason = f"{error.__class__.__name__}: {error}"
            _log.warning(
                "disable notice for %s failed on attempt %d, retrying at %s: %s",
                facts.name,
                claim.attempts,
                retry_at.isoformat(),
                reason,
            )
            async with self._ctx.database.write() as conn:
                await notice_store.mark_notice_failed(conn, claim, retry_at, reason)
            return 0
        async with self._ctx.database.write() as conn:
            recorded = await notice_store.mark_notice_sent(conn, claim, self._ctx.clock())
        if not recorded:
            _log.warning("disable notice for %s was re-claimed during its send", facts.name)
        _log.info("sent the disable notice for %s", facts.name)
        return 1

    async def schedule(self, now: datetime) -> int:
        """Records a pending warning for every current secret with a threshold due."""
        async with self._ctx.database.read() as conn:
            candidates = await store.current_secrets_expiring(conn, now, HORIZON)
            existing = await store.existing_thresholds(conn, (c.secret_id for c in candidates))
        due = []
        for secret in candidates:
            days = due_threshold(secret.create_time, secret.expire_time, now)
            if days is not None and (secret.secret_id, days) not in existing:
                due.append((secret, days))
        if not due:
            return 0
        created = 0
        async with self._ctx.database.write() as conn:
            for secret, days in due:
                created += await store.schedule(conn, secret, days, now)
        return created

    async def _send(self, claim: ClaimedWarning) -> int:
        facts = WarningFacts(
            name=ConfigName(claim.partner_id, claim.callback_config_id),
            callback_url=claim.callback_url,
            contact_email=claim.contact_email,
            expire_time=claim.expire_time,
            threshold_days=claim.threshold_days,
        )
        try:
            await self._transport.send(compose(facts, self._mail_from, self._ctx.clock()))
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            retry_at = self._ctx.clock() + self._backoff.delay(claim.attempts)
            reason = f"{error.__class__.__name__}: {error}"
            _log.warning(
                "expiry warning for %s (%d days) failed on attempt %d, retrying at %s: %s",
                facts.name,
                claim.threshold_days,
                claim.attempts,
                retry_at.isoformat(),
                reason,
            )
            async with self._ctx.database.write() as conn:
                await store.mark_failed(conn, claim, retry_at, reason)
            telemetry.record_warning(claim.threshold_days, "failed")
            return 0
        async with self._ctx.database.write() as conn:
            recorded = await store.mark_sent(conn, claim, self._ctx.clock())
        if not recorded:
            # The lease ran out during the send and another mailer took over:
            # it is the one that records the outcome.
            _log.warning("expiry warning for %s was re-claimed during its send", facts.name)
        _log.info(
            "sent the %d-day expiry warning for %s (attempt %d)",
            claim.threshold_days,
            facts.name,
            claim.attempts,
        )
        telemetry.record_warning(claim.threshold_days, "sent")
        return 1
