"""Read-only queries behind the observable gauges (queue depth and age,
secrets expiring soon). Cheap: each is one indexed aggregate."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookkeeper.service.domain.deliveries import DeliveryState
from hookkeeper.service.store.delivery_tables import notification_deliveries
from hookkeeper.service.store.expiry_warnings import count_expiring

_d = notification_deliveries.c


async def delivery_queue(conn: AsyncConnection, now: datetime) -> tuple[int, float]:
    """Deliveries waiting to be sent, and the age in seconds of the oldest
    (0 when none wait): how late an event accepted now would be at worst."""
    stmt = select(func.count(), func.min(_d.create_time)).where(_d.state == DeliveryState.PENDING)
    count, oldest = (await conn.execute(stmt)).one()
    if not count or oldest is None:
        return 0, 0.0
    return int(count), max(0.0, (now - oldest).total_seconds())


async def secrets_expiring(
    conn: AsyncConnection, now: datetime, windows_days: Iterable[int]
) -> dict[int, int]:
    """Configurations whose current secret expires within each window."""
    return await count_expiring(conn, now, windows_days)
