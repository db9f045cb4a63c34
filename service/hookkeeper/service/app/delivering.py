"""One attempt of one delivery: build the envelope, sign it, send it, and
work out what the delivery's row becomes. Shared by the dispatcher and by
SendTestNotification, so a test send is exactly a real send.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from hookkeeper.service.app.context import AppContext, api_key_aad
from hookkeeper.service.app.secret_rotation import OpenedSecrets, SecretRotation, Signature
from hookkeeper.service.app.sending import Answer, Sender
from hookkeeper.service.crypto.keyring import KeyringError
from hookkeeper.service.domain import envelope, event_types, retry, throttling
from hookkeeper.service.domain.deliveries import (
    AttemptRecord,
    DeliveryKind,
    DeliveryState,
    EventRecord,
)
from hookkeeper.service.domain.endpoint_health import GONE_STATUS
from hookkeeper.service.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from hookkeeper.service.domain.ids import Uuid7Source
from hookkeeper.service.domain.names import ConfigName
from hookkeeper.service.store.attempts import Settled
from hookkeeper.service.store.records import ClaimedDelivery, TargetRecord


@dataclass(frozen=True)
class Settlement:
    """The row update that follows an attempt."""

    state: str
    round_failures: int
    next_attempt_time: datetime | None
    last_error: str | None
    # Until when a 429/503 Retry-After holds the whole configuration.
    hold_until: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """An attempt made: its log record and the settlement of the delivery."""

    claimed: ClaimedDelivery
    attempt: AttemptRecord
    settlement: Settlement


def settled(outcome: Outcome) -> Settled:
    """What ``outcome`` makes of its delivery's row, fenced by its lease."""
    s = outcome.settlement
    return Settled(
        outcome.claimed.lease_token, s.state, s.round_failures, s.next_attempt_time, s.last_error
    )


def body_of(event: EventRecord) -> bytes:
    """The envelope bytes of an event."""
    return envelope.build(
        event_id=event.event_id,
        event_type=event.event_type,
        event_time=event.create_time,
        partner_id=event.partner_id,
        payload_json=event.payload,
        test=event.is_test,
    )


def policy_of(claimed: ClaimedDelivery) -> event_types.RetryPolicy:
    """The retry policy that applies to a delivery."""
    event = claimed.event
    if (
        claimed.delivery.kind == DeliveryKind.EVENT
        and event
        and event_types.is_known(event.event_type)
    ):
        return event_types.get(event.event_type).retry_policy
    return event_types.CONNECTIVITY  # tests and connectivity checks: one attempt


def settle(claimed: ClaimedDelivery, answer: Answer, now: datetime, *, scale: float) -> Settlement:
    """Delivered on 2xx; paused by a 410 Gone (the configuration is disabled
    with it, and the delivery resumes when it is enabled); otherwise retried
    per policy, no earlier than a 429/503's Retry-After, or failed for good."""
    if answer.succeeded:
        return Settlement(DeliveryState.DELIVERED, claimed.delivery.round_failures, None, None)
    failures = claimed.delivery.round_failures + 1
    if answer.http_status == GONE_STATUS and claimed.delivery.kind == DeliveryKind.EVENT:
        return Settlement(DeliveryState.PAUSED, 0, None, answer.error)
    hold = throttling.hold_until(answer.http_status, answer.retry_after, now)
    following = retry.next_attempt_time(policy_of(claimed), failures, now, scale=scale)
    if following is None:
        return Settlement(DeliveryState.FAILED, failures, None, answer.error, hold)
    if hold is not None:
        following = max(following, hold)
    return Settlement(DeliveryState.PENDING, failures, following, answer.error, hold)


class BatchKeys:
    """API keys and secrets of one claimed batch, decrypted once per
    configuration and kept only while the batch's attempts hold a reference
    (the dispatcher makes one per claim), never beyond."""

    def __init__(self) -> None:
        self.api_keys: dict[str, str] = {}
        self.secrets = OpenedSecrets()

    def __repr__(self) -> str:
        return f"BatchKeys(<{len(self.api_keys)} api keys, {len(self.secrets)} secrets>)"


class Deliverer:
    """Makes attempts: signs through SecretRotation (an expired secret is a
    failed attempt, retried), sends with the Sender."""

    def __init__(
        self,
        ctx: AppContext,
        sender: Sender,
        *,
        scale: float,
        owner: str,
        db_concurrency: int = 16,
    ) -> None:
        self._ctx = ctx
        # Signing reads the secrets: at most this many at once, so many
        # concurrent sends never exceed the connection pool (overflow
        # connections are closed on return and reopened: slow churn).
        self._db_slots = asyncio.Semaphore(db_concurrency)
        self._sender = sender
        self._secrets = SecretRotation(ctx)
        self._scale = scale
        self.owner = owner
        self._ids = Uuid7Source()  # of the attempts

    async def _send(
        self, claimed: ClaimedDelivery, target: TargetRecord, keys: BatchKeys | None
    ) -> Answer:
        try:
            return await self._sign_and_send(claimed, target, keys)
        except KeyringError as error:
            # Permanent until an operator restores the key: a failed attempt,
            # retried by policy and visible in the log, not a silent loop of
            # expired leases. The message names key ids only.
            return Answer(0, 0, f"cannot open stored credentials: {error}")

    def _api_key(self, target: TargetRecord, keys: BatchKeys | None) -> str:
        if keys is not None and target.config_id in keys.api_keys:
            return keys.api_keys[target.config_id]
        api_key = self._ctx.keyring.open(target.api_key, api_key_aad(target.config_id)).decode()
        if keys is not None:
            keys.api_keys[target.config_id] = api_key
        return api_key

    async def _signature(
        self, claimed: ClaimedDelivery, target: TargetRecord, body: bytes, keys: BatchKeys | None
    ) -> Signature:
        name = ConfigName(claimed.delivery.partner_id, target.config_id)
        # Standard Webhooks' webhook-id: the transactionId, the same on every retry.
        webhook_id = claimed.delivery.transaction_id
        if claimed.secrets is not None:
            # Read with the claim: no query per delivery.
            return self._secrets.sign_with(
                name,
                target.signature_scheme,
                claimed.secrets,
                body,
                self._ctx.clock(),
                webhook_id,
                keys.secrets if keys is not None else None,
            )
        async with self._db_slots:
            return await self._secrets.sign(name, body, None, webhook_id)

    async def _sign_and_send(
        self, claimed: ClaimedDelivery, target: TargetRecord, keys: BatchKeys | None
    ) -> Answer:
        delivery = claimed.delivery
        api_key = self._api_key(target, keys)
        headers = {"transactionId": delivery.transaction_id, "api-key": api_key}
        if delivery.kind == DeliveryKind.CONNECTIVITY_CHECK:
            return await self._sender.request(
                "GET",
                target.callback_url,
                headers=headers,
                body=None,
                timeout_seconds=target.request_timeout_seconds,
            )
        if claimed.event is None:
            return Answer(0, 0, "the event of this delivery no longer exists")
        body = body_of(claimed.event)
        try:
            signature = await self._signature(claimed, target, body, keys)
        except (FailedPrecondition, InvalidArgument) as error:
            return Answer(0, 0, str(error))
        except NotFound:
            return Answer(0, 0, "the callback configuration no longer exists")
        headers["Content-Type"] = "application/json"
        headers.update(signature.headers(delivery.transaction_id))
        return await self._sender.request(
            "POST",
            target.callback_url,
            headers=headers,
            body=body,
            timeout_seconds=target.request_timeout_seconds,
        )

    async def attempt(self, claimed: ClaimedDelivery, keys: BatchKeys | None = None) -> Outcome:
        """Makes one attempt of a claimed delivery (never raises for the
        partner's failures; they become the attempt's error). ``keys``: the
        decrypted credentials shared by the attempts of one claimed batch."""
        if claimed.send_at is not None:
            # A reserved slot of the configuration's per-second cap.
            wait = (claimed.send_at - self._ctx.clock()).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
        start = self._ctx.clock()
        if claimed.target is None:
            answer = Answer(0, 0, "the callback configuration no longer exists")
        else:
            answer = await self._send(claimed, claimed.target, keys)
        attempt = AttemptRecord(
            id=self._ids.next(),
            delivery_id=claimed.delivery.id,
            partner_id=claimed.delivery.partner_id,
            attempt_number=claimed.delivery.attempt_count,
            start_time=start,
            latency_ms=answer.latency_ms,
            http_status=answer.http_status,
            succeeded=answer.succeeded,
            error=answer.error,
            dispatcher=self.owner,
            kind=claimed.delivery.kind,
            callback_config_id=claimed.delivery.callback_config_id,
            transaction_id=claimed.delivery.transaction_id,
            event_id=claimed.event.event_id if claimed.event else "",
            event_type=claimed.event.event_type if claimed.event else "",
        )
        if claimed.target is None:
            settlement = Settlement(DeliveryState.CANCELLED, 0, None, answer.error)
        else:
            settlement = settle(claimed, answer, self._ctx.clock(), scale=self._scale)
        return Outcome(claimed, attempt, settlement)
