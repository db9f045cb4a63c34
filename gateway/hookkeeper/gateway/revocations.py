"""The gateway's subscription to the service's token revocations
(PartnerService.WatchTokenRevocations), which keeps the partner cache
honest: a revoked token stops working within moments on every gateway.

The partner cache is on only while the watch is live. The stream's first
message switches it on; each later message makes it forget the named
partners; silence beyond a few heartbeats, the end of the stream or any
error switch it off (and clear it) until a new watch is live, so a
revocation the gateway might have missed is never answered from memory.
The log says once when the feed goes and once when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import grpc

from hookkeeper.gateway import rpc
from hookkeeper.gateway.auth import PartnerCache
from hookkeeper.notifications.v1 import partner_pb2

_log = logging.getLogger(__name__)

# Silence longer than this many heartbeats counts as a lost feed.
_HEARTBEATS_OF_SILENCE = 3
# Before the first message says how often heartbeats come.
_FIRST_MESSAGE_SECONDS = 5.0
_RETRY_SECONDS = (0.1, 0.25, 0.5, 1.0)
# grpc-stubs does not declare the end-of-stream marker.
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]


class RevocationWatcher:
    """Keeps one WatchTokenRevocations stream open and the cache in step."""

    def __init__(self, stubs: rpc.Stubs, cache: PartnerCache, service_token: str) -> None:
        self._stubs = stubs
        self._cache = cache
        self._metadata = (("authorization", f"Bearer {service_token}"),)
        self._task: asyncio.Task[None] | None = None
        self.live = False
        self._announced_down = False

    def start(self) -> None:
        """Starts watching in the background."""
        self._task = asyncio.create_task(self._run(), name="token-revocations")

    async def stop(self) -> None:
        """Stops watching; the cache is switched off."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._set_live(False, "stopped")

    def _set_live(self, live: bool, reason: str = "") -> None:
        if live == self.live and (live or self._announced_down):
            return
        self._cache.reset(enabled=live)
        if live:
            _log.warning("token revocation feed live: partner cache on")
            self._announced_down = False
        elif reason != "stopped":
            _log.warning(
                "token revocation feed down (%s): partner cache off until it is back", reason
            )
            self._announced_down = True
        self.live = live

    async def _watch_once(self) -> None:
        call: Any = self._stubs.partners.WatchTokenRevocations(
            partner_pb2.WatchTokenRevocationsRequest(watcher=socket.gethostname()),
            metadata=self._metadata,
        )
        try:
            silence = _FIRST_MESSAGE_SECONDS
            while True:
                reply = await asyncio.wait_for(call.read(), silence)
                if reply is _EOF:
                    raise ConnectionError("the stream ended")
                heartbeat = reply.heartbeat_interval.ToTimedelta().total_seconds()
                silence = max(heartbeat, 0.1) * _HEARTBEATS_OF_SILENCE
                if not self.live:
                    self._set_live(True)
                for partner in reply.partners:
                    self._cache.forget_partner(partner)
        finally:
            call.cancel()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._watch_once()
            except grpc.aio.AioRpcError as error:
                reason = error.code().name
            except TimeoutError:
                reason = "silent"
            except ConnectionError as error:
                reason = str(error)
            was_live = self.live
            self._set_live(False, reason)
            failures = 0 if was_live else failures + 1
            await asyncio.sleep(_RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)])
