"""Use cases of notification delivery: the event-type catalogue,
subscriptions, publishing, test sends, the attempt log and redelivery."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NamedTuple

from hookkeeper.service.app import audit as trail
from hookkeeper.service.app.context import AppContext
from hookkeeper.service.app.delivering import Deliverer, Outcome
from hookkeeper.service.app.sending import Sender
from hookkeeper.service.domain import audit, envelope, event_types, paging
from hookkeeper.service.domain.deliveries import (
    AttemptRecord,
    DeliveryKind,
    DeliveryRecord,
    DeliveryState,
    EventRecord,
    SubscriptionRecord,
)
from hookkeeper.service.domain.delivery_names import DeliveryName, SubscriptionName
from hookkeeper.service.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    invalid,
)
from hookkeeper.service.domain.ids import unix_millis, uuid4_string, uuid4_strings, uuid7_strings
from hookkeeper.service.domain.names import ConfigName, parse_config
from hookkeeper.service.store import attempts, delivery_queue, events, subscriptions
from hookkeeper.service.store import callback_configs as config_store
from hookkeeper.service.store import endpoint_health as endpoint_store
from hookkeeper.service.store.database import Connection
from hookkeeper.service.store.records import ClaimedDelivery, TargetRecord


class Published(NamedTuple):
    """A published event, what it queued, and whether it was a repeat."""

    event: EventRecord
    deliveries: list[DeliveryRecord]
    duplicate: bool


@dataclass(frozen=True)
class DeliveryOptions:
    """Operator settings the use cases need."""

    retry_interval_scale: float = 1.0


def _checked(
    event_type: str,
    payload_json: str,
    event_id_violation: FieldViolation | None,
    prefix: str = "",
) -> tuple[event_types.EventType, str]:
    """The event type and normalized payload; one InvalidArgument naming every
    bad field (under ``prefix.`` when given) otherwise."""
    violations: list[FieldViolation | None] = [event_id_violation]
    kind = payload = None
    at = f"{prefix}." if prefix else ""
    try:
        kind = event_types.get(event_type, f"{at}event_type")
    except InvalidArgument as error:
        violations += error.violations
    try:
        payload = envelope.normalize_payload(payload_json, f"{at}payload_json")
    except InvalidArgument as error:
        violations += error.violations
    envelope.raise_for(violations)
    assert kind is not None
    assert payload is not None
    return kind, payload


MAX_BATCH_PUBLISH = 1000


class PublishEntry(NamedTuple):
    """One event of a batch publish, as the caller sent it (a tuple: a
    thousand are built per call, and a frozen dataclass costs several times
    as much to construct)."""

    parent: str
    event_type: str
    event_id: str
    payload_json: str


def _checked_batch(
    parent: str, entries: list[PublishEntry]
) -> list[tuple[event_types.EventType, str]]:
    """Every entry's event type and normalized payload; one InvalidArgument
    naming every bad field by its index (``requests[3].payload_json``)
    otherwise, so nothing of a bad batch is stored."""
    if not entries:
        raise invalid("requests", "must hold at least one PublishEventRequest")
    if len(entries) > MAX_BATCH_PUBLISH:
        raise invalid("requests", f"must hold at most {MAX_BATCH_PUBLISH} requests")
    # The usual batch is all good: check it without building a field name
    # per entry (a fifth of the validation's cost); on the first bad entry
    # the full pass below names every bad field by its index.
    checked = []
    find, check_id = event_types.find, envelope.check_event_id
    normalize = envelope.normalize_payload
    try:
        for entry in entries:
            kind = find(entry.event_type)
            if kind is None or entry.parent not in ("", parent) or check_id(entry.event_id):
                break
            checked.append((kind, normalize(entry.payload_json)))
        else:
            return checked
    except InvalidArgument:
        pass
    violations: list[FieldViolation] = []
    checked = []
    for i, entry in enumerate(entries):
        at = f"requests[{i}]"
        if entry.parent not in ("", parent):
            violations.append(FieldViolation(f"{at}.parent", "must be empty or equal `parent`"))
        try:
            checked.append(
                _checked(
                    entry.event_type,
                    entry.payload_json,
                    envelope.check_event_id(entry.event_id, f"{at}.event_id"),
                    at,
                )
            )
        except InvalidArgument as error:
            violations += error.violations
    if violations:
        raise InvalidArgument(violations)
    return checked


class Notifications:
    """Subscriptions, publishing and the delivery log."""

    def __init__(
        self,
        ctx: AppContext,
        sender: Sender,
        options: DeliveryOptions = DeliveryOptions(),  # frozen: safe as a default
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._ctx = ctx
        self._deliverer = Deliverer(
            ctx, sender, scale=options.retry_interval_scale, owner="test-send"
        )
        # Lets an in-process dispatcher start on a new delivery at once.
        self._wake = wake or (lambda: None)

    # --- event types and subscriptions --------------------------------

    @staticmethod
    def event_types() -> tuple[event_types.EventType, ...]:
        """The catalogue."""
        return event_types.CATALOGUE

    @staticmethod
    async def _config_of(conn: Connection, partner_id: str, value: str, field: str) -> str:
        name = parse_config(value, field=field)
        if name.partner_id != partner_id:
            raise invalid(field, "must be a callback configuration of the same partner")
        if not await subscriptions.config_exists(conn, partner_id, name.config_id):
            raise NotFound(str(name))
        return name.config_id

    async def subscribe(self, partner_id: str, event_type: str, config: str) -> SubscriptionRecord:
        """Routes an event type of the partner to one of its configurations."""
        kind = event_types.get(event_type, "subscription.event_type")
        now = self._ctx.clock()
        async with self._ctx.database.write() as conn:
            config_id = await self._config_of(
                conn, partner_id, config, "subscription.callback_config"
            )
            record = SubscriptionRecord(partner_id, kind.name, config_id, now, now)
            if not await subscriptions.insert_subscription(conn, record):
                raise AlreadyExists(
                    f"{SubscriptionName(partner_id, kind.name)} already exists; "
                    "use UpdateSubscription to move it"
                )
            subscription = str(SubscriptionName(partner_id, kind.name))
            await trail.record(
                self._ctx, conn, audit.Draft(audit.SUBSCRIPTION_CREATE, subscription, partner_id)
            )
        return record

    async def subscriptions(self, partner_id: str) -> list[SubscriptionRecord]:
        """Every subscription of the partner."""
        async with self._ctx.database.read() as conn:
            return await subscriptions.list_subscriptions(conn, partner_id)

    async def move(
        self, name: SubscriptionName, config: str, mask: list[str]
    ) -> SubscriptionRecord:
        """Points a subscription at another configuration of the same partner."""
        unknown = [p for p in mask if p not in ("callback_config", "*")]
        if unknown:
            raise invalid("update_mask", f"only callback_config can be updated, not {unknown[0]}")
        now = self._ctx.clock()
        async with self._ctx.database.write() as conn:
            config_id = await self._config_of(
                conn, name.partner_id, config, "subscription.callback_config"
            )
            if not await subscriptions.move_subscription(
                conn, name.partner_id, name.event_type, config_id, now
            ):
                raise NotFound(str(name))
            moved = await subscriptions.get_subscription(conn, name.partner_id, name.event_type)
            await trail.record(
                self._ctx,
                conn,
                audit.Draft(audit.SUBSCRIPTION_UPDATE, str(name), name.partner_id),
            )
        assert moved is not None
        return moved

    async def unsubscribe(self, name: SubscriptionName) -> None:
        """Removes a subscription; NotFound when absent."""
        async with self._ctx.database.write() as conn:
            if not await subscriptions.delete_subscription(conn, name.partner_id, name.event_type):
                raise NotFound(str(name))
            await trail.record(
                self._ctx,
                conn,
                audit.Draft(audit.SUBSCRIPTION_DELETE, str(name), name.partner_id),
            )

    # --- publishing ------------------------------------------------------

    async def publish(
        self, partner_id: str, event_type: str, event_id: str, payload_json: str
    ) -> Published:
        """Stores the event and queues its delivery in one transaction, so it
        is durable before the caller hears back; a repeated event id queues
        nothing."""
        kind, payload = _checked(event_type, payload_json, envelope.check_event_id(event_id))
        now = self._ctx.clock()
        event_pk, delivery_id = uuid7_strings(2, unix_millis(now))
        transaction_id = uuid4_string()
        record = EventRecord(event_pk, partner_id, kind.name, event_id, payload, False, now)
        if not self._ctx.database.is_sqlite:
            return await self._publish_pg(record, delivery_id, transaction_id)
        async with self._ctx.database.write() as conn:
            stored, inserted = await events.insert_event(conn, record)
            if not inserted:
                return Published(
                    stored, await delivery_queue.deliveries_of_event(conn, stored.id), True
                )
            queued = []
            subscription = await subscriptions.get_subscription(conn, partner_id, kind.name)
            if subscription is not None:
                delivery = delivery_queue.new_delivery(
                    partner_id=partner_id,
                    kind=DeliveryKind.EVENT,
                    event_pk=stored.id,
                    config_id=subscription.callback_config_id,
                    now=now,
                    ids=(delivery_id, transaction_id),
                    event_id=stored.event_id,
                    event_type=stored.event_type,
                )
                await delivery_queue.insert_delivery(conn, delivery)
                queued.append(delivery)
        if queued:
            self._wake()
        return Published(stored, queued, False)

    async def _publish_pg(
        self, record: EventRecord, delivery_id: str, transaction_id: str
    ) -> Published:
        """``publish`` on PostgreSQL: one statement in autocommit (the event,
        its delivery, the dispatchers' wake-up); a duplicate is then read back."""
        async with self._ctx.database.autocommit() as conn:
            inserted, config_id = await delivery_queue.publish_one(
                conn, record, delivery_id, transaction_id
            )
            if not inserted:
                stored = await events.get_event(conn, record.partner_id, record.event_id)
                assert stored is not None  # a conflict means a committed event
                return Published(
                    stored, await delivery_queue.deliveries_of_event(conn, stored.id), True
                )
        queued = []
        if config_id is not None:
            queued.append(
                delivery_queue.new_delivery(
                    partner_id=record.partner_id,
                    kind=DeliveryKind.EVENT,
                    event_pk=record.id,
                    config_id=config_id,
                    now=record.create_time,
                    ids=(delivery_id, transaction_id),
                    event_id=record.event_id,
                    event_type=record.event_type,
                )
            )
            self._wake()
        return Published(record, queued, False)

    async def publish_many(
        self, partner_id: str, parent: str, entries: list[PublishEntry]
    ) -> list[Published]:
        """Publishes up to MAX_BATCH_PUBLISH events in one transaction: all or
        nothing (any bad entry fails the whole batch before anything is
        stored), each event id idempotent as in ``publish``. An id repeated
        within the batch is answered like a republish of its first entry."""
        checked = _checked_batch(parent, entries)
        now = self._ctx.clock()
        # The events' ids, drawn at once; PostgreSQL draws the deliveries'
        # own (see delivery_queue.publish_many).
        ids = uuid7_strings(len(entries), unix_millis(now))
        first_of: dict[str, int] = {}
        fresh: list[EventRecord] = []
        for i, (entry, (kind, payload)) in enumerate(zip(entries, checked, strict=True)):
            if entry.event_id not in first_of:
                first_of[entry.event_id] = i
                fresh.append(
                    EventRecord(
                        ids[i],
                        partner_id,
                        kind.name,
                        entry.event_id,
                        payload,
                        False,
                        now,
                    )
                )
        if not self._ctx.database.is_sqlite:
            return await self._publish_many_pg(entries, fresh, first_of)
        async with self._ctx.database.write() as conn:
            stored = await events.insert_events(conn, fresh)
            routes = {
                s.event_type: s.callback_config_id
                for s in await subscriptions.list_subscriptions(conn, partner_id)
            }
            to_queue = []
            delivery_ids = uuid7_strings(len(entries), unix_millis(now))
            transaction_ids = uuid4_strings(len(entries))
            for event, inserted in stored:
                if inserted and (config_id := routes.get(event.event_type)) is not None:
                    at = first_of[event.event_id]
                    to_queue.append(
                        delivery_queue.FreshDelivery(
                            delivery_ids[at],
                            transaction_ids[at],
                            event.id,
                            config_id,
                            event.event_id,
                            event.event_type,
                        )
                    )
            new_deliveries = delivery_queue.new_deliveries(
                partner_id=partner_id, kind=DeliveryKind.EVENT, now=now, fresh=to_queue
            )
            await delivery_queue.insert_deliveries(conn, new_deliveries)
            earlier = await delivery_queue.deliveries_of_events(
                conn, [event.id for event, inserted in stored if not inserted]
            )
        if new_deliveries:
            self._wake()
        return _batch_answers(entries, first_of, stored, new_deliveries, earlier)

    async def _publish_many_pg(
        self,
        entries: list[PublishEntry],
        fresh: list[EventRecord],
        first_of: dict[str, int],
    ) -> list[Published]:
        """``publish_many`` on PostgreSQL: one statement in autocommit (events,
        deliveries with ids drawn by PostgreSQL, the dispatchers' wake-up);
        ids published before are then read back with their deliveries."""
        async with self._ctx.database.autocommit() as conn:
            done = await delivery_queue.publish_many(conn, fresh)
            repeated = [e.event_id for e in fresh if e.id not in done.inserted]
            earlier_events = await events.get_events(conn, fresh[0].partner_id, repeated)
            earlier = await delivery_queue.deliveries_of_events(
                conn, [e.id for e in earlier_events.values()]
            )
        by_pk = {e.id: e for e in fresh}
        to_queue = [
            delivery_queue.FreshDelivery(
                delivery_id,
                transaction_id,
                pk,
                config_id,
                by_pk[pk].event_id,
                by_pk[pk].event_type,
            )
            for pk, config_id, delivery_id, transaction_id in done.queued
        ]
        new_deliveries = delivery_queue.new_deliveries(
            partner_id=fresh[0].partner_id,
            kind=DeliveryKind.EVENT,
            now=fresh[0].create_time,
            fresh=to_queue,
        )
        if new_deliveries:
            self._wake()
        stored = [
            (e, True) if e.id in done.inserted else (earlier_events[e.event_id], False)
            for e in fresh
        ]
        return _batch_answers(entries, first_of, stored, new_deliveries, earlier)

    # --- test sends ------------------------------------------------------

    async def send_test(self, name: ConfigName, event_type: str, payload_json: str) -> Outcome:
        """Sends one test notification now and records the attempt."""
        kind, payload = _checked(event_type, payload_json, None)
        now = self._ctx.clock()
        event = EventRecord(
            str(uuid.uuid4()),
            name.partner_id,
            kind.name,
            f"test-{uuid.uuid4()}",
            payload,
            True,
            now,
        )
        async with self._ctx.database.write() as conn:
            config = await config_store.get_config(conn, name.partner_id, name.config_id)
            if config is None:
                raise NotFound(str(name))
            await events.insert_event(conn, event)
            delivery = delivery_queue.new_delivery(
                partner_id=name.partner_id,
                kind=DeliveryKind.TEST,
                event_pk=event.id,
                config_id=config.id,
                now=now,
            )
            # Never PENDING: the dispatcher must not pick a test send up. Should
            # this process die before the answer, the row reads as failed.
            delivery = replace(
                delivery,
                attempt_count=1,
                state=DeliveryState.FAILED,
                next_attempt_time=None,
                last_error="interrupted before an answer",
            )
            await delivery_queue.insert_delivery(conn, delivery)
        target = TargetRecord(
            config.id, config.callback_url, config.request_timeout_seconds, config.api_key
        )
        token = str(uuid.uuid4())
        claimed = ClaimedDelivery(delivery, token, event, target)
        outcome = await self._deliverer.attempt(claimed)
        async with self._ctx.database.write() as conn:
            await attempts.insert_attempts(conn, [outcome.attempt])
            await delivery_queue.finish_unleased(
                conn,
                delivery.id,
                state=DeliveryState.DELIVERED
                if outcome.attempt.succeeded
                else DeliveryState.FAILED,
                error=outcome.attempt.error or None,
                now=self._ctx.clock(),
            )
        return outcome

    # --- the log and redelivery -----------------------------------------

    async def attempts(
        self, parent: DeliveryName, event_id: str, page_size: int, page_token: str
    ) -> tuple[list[AttemptRecord], str]:
        """A page of attempts, newest first, and the next page's token."""
        size = paging.page_size(page_size)
        if event_id:
            envelope.raise_for([envelope.check_event_id(event_id)])
        scope = paging.list_scope("ListDeliveryAttempts", str(parent), event_id)
        cursor = self._ctx.page_tokens.decode(page_token, scope)
        before = (cursor.create_time, cursor.item_id) if cursor else None
        async with self._ctx.database.read() as conn:
            if parent.delivery_id is not None:
                found = await delivery_queue.get_delivery(
                    conn, parent.partner_id, parent.delivery_id
                )
                if found is None:
                    raise NotFound(str(parent))
            records = await attempts.list_attempts(
                conn,
                parent.partner_id,
                delivery_id=parent.delivery_id,
                event_id=event_id or None,
                before=before,
                limit=size + 1,
            )
        page, more = records[:size], len(records) > size
        token = ""
        if more:
            cursor = paging.Cursor(page[-1].start_time, page[-1].id)
            token = self._ctx.page_tokens.encode(cursor, scope)
        return page, token

    async def recover(self, name: ConfigName, since: datetime) -> int:
        """Queues again, in publish order and each with a fresh retry
        schedule, every delivery of events to the configuration that ended
        failed at or after ``since``; how many."""
        async with self._ctx.database.write() as conn:
            if await config_store.get_config(conn, name.partner_id, name.config_id) is None:
                raise NotFound(str(name))
            ids = await endpoint_store.failed_since(conn, name.config_id, since)
            count = await endpoint_store.requeue_in_order(
                conn, ids, self._ctx.clock(), from_state=DeliveryState.FAILED
            )
        if count:
            self._wake()
        return count

    async def redeliver(self, name: DeliveryName) -> DeliveryRecord:
        """Starts a new round of attempts for a delivered or failed notification."""
        assert name.delivery_id is not None
        now = self._ctx.clock()
        async with self._ctx.database.write() as conn:
            found = await delivery_queue.get_delivery(conn, name.partner_id, name.delivery_id)
            if found is None:
                raise NotFound(str(name))
            if found.state == DeliveryState.PENDING:
                raise FailedPrecondition(f"{name} is still pending delivery")
            if found.state == DeliveryState.PAUSED:
                raise FailedPrecondition(
                    f"{name} is paused: its callback configuration is disabled; enable it"
                )
            if found.state == DeliveryState.CANCELLED:
                raise FailedPrecondition(
                    f"{name} was cancelled: its callback configuration was deleted"
                )
            if found.kind != DeliveryKind.EVENT:
                raise FailedPrecondition(f"{name} is not the delivery of a published event")
            await delivery_queue.requeue(conn, found.id, now)
            await delivery_queue.wake_dispatchers(conn)
            updated = await delivery_queue.get_delivery(conn, name.partner_id, name.delivery_id)
        assert updated is not None
        self._wake()
        return updated


def _batch_answers(
    entries: list[PublishEntry],
    first_of: dict[str, int],
    stored: list[tuple[EventRecord, bool]],
    new_deliveries: list[DeliveryRecord],
    earlier: Mapping[str, list[DeliveryRecord]],
) -> list[Published]:
    """One answer per entry: the event stored (first occurrence of its id in
    the batch) with the deliveries this batch queued, or, for an id
    published before or repeated in the batch, as a republish."""
    queued = {str(d.event_pk): [d] for d in new_deliveries}
    if len(stored) == len(entries):
        # No id repeated within the batch (the usual case): ``stored`` is
        # in the entries' order, one per entry.
        return [
            Published(event, queued.get(event.id, []), False)
            if inserted
            else Published(event, earlier.get(event.id, []), True)
            for event, inserted in stored
        ]
    by_id = {event.event_id: (event, inserted) for event, inserted in stored}
    answers = []
    for i, entry in enumerate(entries):
        event, inserted = by_id[entry.event_id]
        repeat = not inserted or first_of[entry.event_id] != i
        deliveries = queued.get(event.id, []) if inserted else earlier.get(event.id, [])
        answers.append(Published(event, deliveries, repeat))
    return answers
