"""Endpoint health use cases: disabling and enabling configurations, what
attempt outcomes mean for their configuration (auto-disable, Retry-After
holds), and recovering failed deliveries.

The functions taking a connection run inside the caller's transaction (the
dispatcher's outcome batch, or a configuration RPC's unit of work), so a state
change, its paused deliveries and its notice e-mail commit together or not at
all. They announce the change themselves because the dispatcher's batch is
no unit of work; under a unit of work that also marks the configuration
changed, PostgreSQL delivers the identical notification once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from hookkeeper.service import telemetry
from hookkeeper.service.app.delivering import Outcome
from hookkeeper.service.domain import endpoint_health as rules
from hookkeeper.service.domain.deliveries import DeliveryKind
from hookkeeper.service.domain.names import ConfigName
from hookkeeper.service.store import endpoint_health as store
from hookkeeper.service.store.change_feed import announce
from hookkeeper.service.store.database import Connection


async def disable(conn: Connection, config_id: str, reason: str, now: datetime) -> bool:
    """Disables an active configuration: pauses its idle pending deliveries
    and queues the one notice e-mail. False (nothing done) when it was
    already disabled."""
    if not await store.mark_disabled(conn, config_id, reason, now):
        return False
    paused = await store.pause_idle(conn, config_id, reason, now)
    await store.insert_notice(conn, config_id, reason, now)
    await announce(conn, config_id)
    telemetry.record_disabled(reason_kind(reason))
    telemetry.record_paused(paused)
    return True


async def enable(conn: Connection, config_id: str, now: datetime) -> int | None:
    """Enables a disabled configuration and resumes its paused deliveries in
    publish order with fresh retry schedules; how many resumed, or None when
    it was already active."""
    if not await store.mark_active(conn, config_id, now):
        return None
    resumed = await store.resume_paused(conn, config_id, now)
    await announce(conn, config_id)
    return resumed


def reason_kind(reason: str) -> str:
    """A low-cardinality label for metrics: gone, failing or manual."""
    if reason == rules.gone_reason():
        return "gone"
    if reason == rules.MANUAL_REASON:
        return "manual"
    return "failing"


@dataclass(frozen=True)
class _Seen:
    succeeded: bool
    http_status: int
    start: datetime


async def after_attempts(
    conn: Connection, outcomes: Sequence[Outcome], now: datetime, disable_after: timedelta
) -> list[ConfigName]:
    """Applies a batch of attempts to their configurations' health: the run
    of failures, Retry-After holds, and disabling (410 Gone at once, or
    failures only for ``disable_after``). Only deliveries of published events
    count: a test send or a connectivity check never disables. Returns the
    names of the configurations disabled."""
    by_config: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        delivery = outcome.claimed.delivery
        if outcome.claimed.target is not None and delivery.kind == DeliveryKind.EVENT:
            by_config[outcome.claimed.delivery.callback_config_id].append(outcome)
    disabled: list[ConfigName] = []
    # The common case, every attempt of a configuration succeeded, costs two
    # statements per batch whatever the number of configurations: only rows
    # that were failing change (their run of failures ends).
    healthy = [c for c, batch in by_config.items() if all(o.attempt.succeeded for o in batch)]
    await store.clear_failures(conn, healthy)
    # Locked in id order, like the claim: concurrent batches never deadlock.
    for config_id in sorted(set(by_config) - set(healthy)):
        batch = sorted(by_config[config_id], key=lambda o: o.attempt.start_time)
        health = await store.lock_health(conn, config_id)
        if health is None:
            continue  # deleted while its attempts were in flight: nothing to keep
        failing_since = health.failing_since
        hold = health.hold_until
        reason = None
        for outcome in batch:
            attempt = outcome.attempt
            failing_since = rules.failing_since_after(
                failing_since, succeeded=attempt.succeeded, attempt_time=attempt.start_time
            )
            if outcome.settlement.hold_until is not None:
                hold = max(hold or now, outcome.settlement.hold_until)
                telemetry.record_throttled("retry_after")
            reason = reason or rules.should_disable(
                http_status=attempt.http_status,
                failing_since=failing_since,
                now=now,
                after=disable_after,
            )
        await store.write_health(
            conn, config_id, {"failing_since": failing_since, "hold_until": hold}
        )
        if reason is not None and await disable(conn, config_id, reason, now):
            disabled.append(ConfigName(batch[0].claimed.delivery.partner_id, config_id))
    return disabled
