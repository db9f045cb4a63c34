"""Builds the delivery side (sender, dispatcher, use cases) from Settings."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from hookkeeper.service.app.audit import AuditTrail
from hookkeeper.service.app.context import AppContext
from hookkeeper.service.app.notifications import DeliveryOptions, Notifications
from hookkeeper.service.delivery.dispatcher import Dispatcher, DispatcherOptions
from hookkeeper.service.delivery.http import Sender
from hookkeeper.service.settings import Settings
from hookkeeper.service.startup_heap import freeze_startup_heap
from hookkeeper.service.supervisor import worker_index

_log = logging.getLogger(__name__)


@dataclass
class DeliveryRuntime:
    """The process's sender, its dispatcher (if any) and the use cases."""

    sender: Sender
    notifications: Notifications
    dispatcher: Dispatcher | None

    async def close(self) -> None:
        """Closes the connection pool (after the dispatcher stopped)."""
        await self.sender.close()

    async def run(self, stop: asyncio.Event) -> None:
        """The worker of ``hookkeeper serve``: the dispatcher (when enabled)
        until ``stop``, then the connection pool is closed."""
        try:
            if self.dispatcher is not None:
                await self.dispatcher.run(stop)
            else:
                await stop.wait()
        finally:
            await self.close()


async def run_until_signalled(runtime: DeliveryRuntime, ctx: AppContext) -> None:
    """``hookkeeper dispatcher``: runs until SIGTERM or SIGINT, finishes the
    attempts in flight, records them, and exits."""
    frozen = freeze_startup_heap()
    _log.info("start-up heap frozen: %d objects out of full collections", frozen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Signatures are counted in memory per minute: written from here (serve
    # writes its own), the last ones once every attempt has ended.
    finished = asyncio.Event()
    flusher = asyncio.create_task(AuditTrail(ctx).run(finished, seal=False))
    try:
        await runtime.run(stop)
    finally:
        finished.set()
        await flusher
        await ctx.database.close()


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory of ``hookkeeper dispatcher`` for the setting
    ``dispatcher_event_loop`` (None: asyncio's own). The dispatcher uses
    asyncio's API only, so either runs it; uvloop's transports and timers
    cost ~14 % less CPU per delivery in the benchmark (docs/delivery.md)."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as error:
        raise RuntimeError(
            "uvloop is not installed: set HOOKKEEPER_DISPATCHER_EVENT_LOOP=asyncio"
        ) from error
    return uvloop.new_event_loop


def default_notifications(ctx: AppContext) -> Notifications:
    """Use cases with a sender of their own and no dispatcher to wake (an
    in-process server in tests, or a server built without settings)."""
    return Notifications(ctx, Sender(allow_insecure=ctx.policy.allow_insecure_callbacks))


def dispatcher_options(settings: Settings) -> DispatcherOptions:
    """Dispatcher options from settings."""
    return DispatcherOptions(
        poll_interval=settings.dispatcher_poll_interval_seconds,
        batch_size=settings.dispatcher_batch_size,
        concurrency=settings.dispatcher_concurrency,
        per_host=settings.dispatcher_per_host_concurrency
        or max(1, settings.dispatcher_concurrency // 4),
        lease_margin=timedelta(seconds=settings.delivery_lease_margin_seconds),
        retry_interval_scale=settings.retry_interval_scale,
        # Leave a few pooled connections for claiming and recording.
        db_concurrency=max(1, min(16, settings.db_pool_size - 4)),
        standby=worker_index() > 0,
    )


def build(ctx: AppContext, settings: Settings, *, with_dispatcher: bool) -> DeliveryRuntime:
    """One sender for the process; a dispatcher when asked for."""
    sender = Sender(
        allow_insecure=settings.allow_insecure_callbacks,
        max_connections=max(settings.dispatcher_concurrency, 10),
    )
    dispatcher = Dispatcher(ctx, sender, dispatcher_options(settings)) if with_dispatcher else None
    notifications = Notifications(
        ctx,
        sender,
        DeliveryOptions(retry_interval_scale=settings.retry_interval_scale),
        wake=dispatcher.wake if dispatcher else None,
    )
    return DeliveryRuntime(sender, notifications, dispatcher)
