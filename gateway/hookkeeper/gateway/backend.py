"""Whether the service behind the gateway can serve: its gRPC health, asked
every quarter second over the gateway's own channel.

The service reports NOT_SERVING while its database is out of reach; a
service that is stopped or unreachable refuses the connection, and a paused
one does not answer within the probe's timeout (three times in a row).
Either way the gateway answers 503 (``/healthz`` and every GraphQL request)
until the service says SERVING again, and logs one line when it goes and
one when it comes back, never one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hookkeeper.gateway import rpc

_log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 0.25
PROBE_TIMEOUT_SECONDS = 1.5
# A probe that times out may only mean this machine or this process's event
# loop was busy: the service counts as gone after this many timeouts in a
# row (about 4.5 s for a paused service). A refused connection or
# NOT_SERVING counts at once.
TIMEOUTS_BEFORE_UNAVAILABLE = 3
# Retry-After of a 503: the probe notices recovery well within a second.
RETRY_AFTER_SECONDS = 1


class ServiceHealth:
    """The service's availability as last probed."""

    def __init__(self, stubs: rpc.Stubs, target: str) -> None:
        self._stubs = stubs
        self._target = target
        # Until the first probe answers, requests go through (they fail on
        # their own if the service is not there).
        self.available = True
        self._timeouts = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts probing in the background."""
        self._task = asyncio.create_task(self._run(), name="service-health")

    async def stop(self) -> None:
        """Stops probing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def probe(self) -> None:
        """Asks the service once and records (and logs a change of) the answer."""
        stub = self._stubs.stub(health_pb2_grpc.HealthStub)
        try:
            pending = stub.Check(health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT_SECONDS)
            reply = await cast(Awaitable[health_pb2.HealthCheckResponse], pending)
            serving = reply.status == health_pb2.HealthCheckResponse.SERVING
            reason = (
                "" if serving else health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                self._timeouts += 1
                if self._timeouts < TIMEOUTS_BEFORE_UNAVAILABLE:
                    return
            serving, reason = False, error.code().name
        else:
            self._timeouts = 0
        self._record(serving, reason)

    def _record(self, serving: bool, reason: str) -> None:
        if serving and not self.available:
            _log.warning("service at %s is available again", self._target)
        elif not serving and self.available:
            _log.error(
                "service at %s is unavailable (%s); answering 503 until it is back",
                self._target,
                reason,
            )
        self.available = serving

    async def _run(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
