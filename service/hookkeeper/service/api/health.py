"""gRPC health follows the database: NOT_SERVING while it cannot be reached.

Every service of the server depends on the database, so one probe loop sets
every service's status (and the server's, ``""``). A request that finds the
database gone wakes the loop at once; otherwise it probes every
``interval`` seconds while serving and five times a second while not, so
SERVING comes back within a fraction of a second of the database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any, Protocol

from grpc_health.v1 import health_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_DOWN_INTERVAL = 0.2


class _Availability(Protocol):
    up: bool
    changed: asyncio.Event


class Probed(Protocol):
    """What health needs of the database (the store's ``Database`` is one):
    its last known availability, and a probe that updates it."""

    @property
    def availability(self) -> _Availability:
        """The database's state as this process last saw it."""

    async def probe(self, limit_seconds: float) -> bool:
        """Checks the database, updating ``availability``."""


async def follow_database(
    database: Probed,
    health: Any,
    services: Iterable[str],
    interval: float,
    probe_timeout: float,
) -> None:
    """Runs until cancelled, keeping ``health`` in step with ``database``."""
    names = (*services, "")
    availability = database.availability
    serving = True
    while True:
        availability.changed.clear()
        await database.probe(probe_timeout)
        if availability.up != serving:
            serving = availability.up
            for name in names:
                await health.set(name, SERVING if serving else NOT_SERVING)
        wait = interval if serving else min(interval, _DOWN_INTERVAL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(availability.changed.wait(), wait)
