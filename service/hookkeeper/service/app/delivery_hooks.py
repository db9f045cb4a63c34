"""What configuration changes mean for delivery, run inside the
configuration's own write transaction (so they happen exactly when it
commits, and never delay it beyond one insert or update):

- a callback URL registered or changed queues one connectivity GET, which
  the dispatcher sends and records like any attempt (never retried);
- a configuration deleted cancels its pending deliveries.
"""

from __future__ import annotations

from datetime import datetime

from hookkeeper.service.domain.deliveries import DeliveryKind
from hookkeeper.service.store import delivery_queue
from hookkeeper.service.store.batch import Writer


async def callback_url_set(conn: Writer, partner_id: str, config_id: str, now: datetime) -> None:
    """Queues the connectivity check of a new or changed callback URL."""
    await delivery_queue.insert_delivery(
        conn,
        delivery_queue.new_delivery(
            partner_id=partner_id,
            kind=DeliveryKind.CONNECTIVITY_CHECK,
            event_pk=None,
            config_id=config_id,
            now=now,
        ),
    )


async def config_deleted(conn: Writer, config_id: str, now: datetime) -> None:
    """Cancels every pending delivery to a configuration being deleted."""
    await delivery_queue.cancel_for_config(conn, config_id, now)
