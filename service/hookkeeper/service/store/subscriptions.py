"""Repository functions for partners' event subscriptions. Each takes the
connection of a transaction opened by the caller."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from hookkeeper.service.domain.deliveries import SubscriptionRecord
from hookkeeper.service.store.delivery_tables import (
    notification_attempts,
    notification_deliveries,
    notification_events,
    notification_subscriptions,
)
from hookkeeper.service.store.dialects import insert_ignoring
from hookkeeper.service.store.tables import callback_configs

_events = notification_events.c
_subs = notification_subscriptions.c
_deliveries = notification_deliveries.c
_attempts = notification_attempts.c
_configs = callback_configs.c


_INSERT_SUBSCRIPTION = insert_ignoring(notification_subscriptions, ["partner_id", "event_type"])
_GET_SUBSCRIPTION = select(notification_subscriptions).where(
    _subs.partner_id == bindparam("partner_id"), _subs.event_type == bindparam("event_type")
)


def _subscription(row: Row[Any]) -> SubscriptionRecord:
    m = row._mapping
    return SubscriptionRecord(
        m["partner_id"],
        m["event_type"],
        m["callback_config_id"],
        m["create_time"],
        m["update_time"],
    )


async def get_subscription(
    conn: AsyncConnection, partner_id: str, event_type: str
) -> SubscriptionRecord | None:
    """The partner's subscription of an event type, if any."""
    row = (
        await conn.execute(_GET_SUBSCRIPTION, {"partner_id": partner_id, "event_type": event_type})
    ).first()
    return _subscription(row) if row else None


async def insert_subscription(conn: AsyncConnection, record: SubscriptionRecord) -> bool:
    """Inserts a subscription; False when the partner already has one for the type."""
    result = await conn.execute(
        _INSERT_SUBSCRIPTION[conn.dialect.name],
        {
            "partner_id": record.partner_id,
            "event_type": record.event_type,
            "callback_config_id": record.callback_config_id,
            "create_time": record.create_time,
            "update_time": record.update_time,
        },
    )
    return bool(result.rowcount == 1)


async def list_subscriptions(conn: AsyncConnection, partner_id: str) -> list[SubscriptionRecord]:
    """Every subscription of the partner, ordered by event type."""
    stmt = (
        select(notification_subscriptions)
        .where(_subs.partner_id == partner_id)
        .order_by(_subs.event_type)
    )
    return [_subscription(r) for r in await conn.execute(stmt)]


async def move_subscription(
    conn: AsyncConnection, partner_id: str, event_type: str, config_id: str, now: datetime
) -> bool:
    """Points a subscription at another configuration; False when it does not exist."""
    result = await conn.execute(
        update(notification_subscriptions)
        .where(_subs.partner_id == partner_id, _subs.event_type == event_type)
        .values(callback_config_id=config_id, update_time=now)
    )
    return bool(result.rowcount == 1)


async def delete_subscription(conn: AsyncConnection, partner_id: str, event_type: str) -> bool:
    """Removes a subscription; False when it did not exist."""
    result = await conn.execute(
        delete(notification_subscriptions).where(
            _subs.partner_id == partner_id, _subs.event_type == event_type
        )
    )
    return bool(result.rowcount == 1)


async def config_exists(conn: AsyncConnection, partner_id: str, config_id: str) -> bool:
    """Whether the partner owns the configuration."""
    row = (
        await conn.execute(
            select(_configs.id).where(_configs.id == config_id, _configs.partner_id == partner_id)
        )
    ).first()
    return row is not None
