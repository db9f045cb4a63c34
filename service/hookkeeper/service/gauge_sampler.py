"""Feeds the observable gauges from the database on a timer.

Observable-gauge callbacks run synchronously inside the SDK's metric reader,
where no database query can be awaited; so ``hookkeeper serve`` samples the
queue depth, the oldest pending delivery's age and the secrets expiring
within 30/7/1 days every ``interval`` seconds, and the callbacks report the
latest sample. It runs only when metrics are on. Every replica reports the
same database-wide values: aggregate them with max (or last), not sum.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hookkeeper.service import telemetry
from hookkeeper.service.app.context import AppContext
from hookkeeper.service.domain.errors import Unavailable
from hookkeeper.service.domain.expiry_warnings import THRESHOLD_DAYS
from hookkeeper.service.store import gauges

_log = logging.getLogger(__name__)


class GaugeSampler:
    """Samples the database-wide gauges until told to stop."""

    def __init__(self, ctx: AppContext, interval: float = 15.0) -> None:
        self._ctx = ctx
        self._interval = interval

    async def sample(self) -> None:
        """One sample of every gauge."""
        now = self._ctx.clock()
        async with self._ctx.database.read() as conn:
            depth, oldest_age = await gauges.delivery_queue(conn, now)
            expiring = await gauges.secrets_expiring(conn, now, THRESHOLD_DAYS)
        telemetry.set_delivery_queue(depth, oldest_age)
        telemetry.set_secrets_expiring(expiring)

    async def run(self, stop: asyncio.Event) -> None:
        """Samples every interval while metrics are on; a failed sample is
        logged and the next one tried."""
        while not stop.is_set() and telemetry.metrics_enabled():
            try:
                await self.sample()
            except Unavailable:
                pass  # logged once by the database's availability
            except Exception:
                _log.exception("cannot sample the gauges; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
