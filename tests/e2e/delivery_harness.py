"""Shared set-up of the delivery end-to-end tests: a migrated database, real
``hookkeeper serve`` / ``hookkeeper dispatcher`` processes, and an async gRPC
client for NotificationService and the configuration services."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.notifications.v1 import notification_pb2 as nt
from hookkeeper.notifications.v1 import notification_pb2_grpc as nt_grpc
from hookkeeper.notifications.v1 import secret_rotation_pb2 as sr
from hookkeeper.notifications.v1 import secret_rotation_pb2_grpc as sr_grpc
from hookkeeper.service.crypto.keyring import generate_key_entry
from hookkeeper.service.store import migrate
from tests.support.processes import Process, base_env, free_port, start, wait_for_grpc_health

TOKEN = "delivery-token-" + "d" * 24
METADATA = (("authorization", f"Bearer {TOKEN}"),)
FAST = {
    "HOOKKEEPER_RETRY_INTERVAL_SCALE": "0.02",  # 25 s becomes 0.5 s
    "HOOKKEEPER_DISPATCHER_ENABLED": "true",  # receivers here are on 127.0.0.1
    "HOOKKEEPER_DISPATCHER_POLL_INTERVAL_SECONDS": "0.1",
    # Short leases (timeout + 3 s) so a SIGKILLed dispatcher's work returns soon.
    "HOOKKEEPER_DELIVERY_LEASE_MARGIN_SECONDS": "3",
    "HOOKKEEPER_SHUTDOWN_GRACE_SECONDS": "3",
    "HOOKKEEPER_LOG_FORMAT": "text",
}


@dataclass
class Stack:
    """A database, the processes started on it, and a client."""

    tmp: Path
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    def serve(self, name: str, **extra: str) -> Client:
        """Starts ``hookkeeper serve``; returns a client once it is healthy."""
        address = f"127.0.0.1:{free_port()}"
        env = {**self.env, "HOOKKEEPER_GRPC_LISTEN": address, **extra}
        process = start(["serve"], env, self.tmp / f"{name}.log")
        self.processes.append(process)
        try:
            wait_for_grpc_health(address)
        except TimeoutError:
            process.kill()
            raise AssertionError(f"server did not start:\n{process.output()}") from None
        return Client(address)

    def dispatcher(self, name: str, **extra: str) -> Process:
        """Starts ``hookkeeper dispatcher``."""
        process = start(["dispatcher"], {**self.env, **extra}, self.tmp / f"{name}.log")
        self.processes.append(process)
        return process

    def stop_all(self) -> list[int]:
        """SIGTERM to every process still running; their exit codes."""
        return [p.terminate() for p in self.processes]


def new_stack(tmp: Path, database_url: str | None = None, **extra: str) -> Stack:
    """A migrated database (SQLite under ``tmp`` unless a URL is given)."""
    # In-process (not `hookkeeper keys generate` / `migrate`): the same code,
    # without two interpreter start-ups per test.
    keys = generate_key_entry()
    env = base_env(
        {
            "HOOKKEEPER_VAR_DIR": str(tmp / "var"),
            "HOOKKEEPER_MASTER_KEYS": keys,
            "HOOKKEEPER_SERVICE_TOKENS": f"tests={TOKEN}",
            **FAST,
            **extra,
        }
    )
    if database_url:
        env["HOOKKEEPER_DATABASE_URL"] = database_url
    url = database_url or f"sqlite+aiosqlite:///{tmp / 'var' / 'hookkeeper.db'}"
    # Alembic's env runs its own event loop: give it a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(migrate.upgrade, url).result()
    return Stack(tmp, env)


class Client:
    """Async stubs of the three services over one channel."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.configs = cc_grpc.CallbackConfigServiceStub(self.channel)
        self.secrets = sr_grpc.SecretRotationServiceStub(self.channel)
        self.notifications = nt_grpc.NotificationServiceStub(self.channel)

    async def config(self, partner: str, url: str, wait_seconds: int = 1) -> tuple[str, str]:
        """Creates a configuration; returns (name, secret)."""
        reply = await self.configs.CreateCallbackConfig(
            cc.CreateCallbackConfigRequest(
                parent=partner,
                callback_config=cc.CallbackConfig(
                    callback_url=url,
                    api_key="partner-api-key-é",
                    contact_email="ops@example.com",
                    request_timeout_seconds=wait_seconds,
                ),
            ),
            metadata=METADATA,
        )
        return reply.callback_config.name, reply.secret

    async def subscribe(self, partner: str, event_type: str, config: str) -> nt.Subscription:
        """Subscribes ``event_type`` to ``config``."""
        reply = await self.notifications.CreateSubscription(
            nt.CreateSubscriptionRequest(
                parent=partner,
                subscription=nt.Subscription(event_type=event_type, callback_config=config),
            ),
            metadata=METADATA,
        )
        return reply.subscription

    async def publish(
        self, partner: str, event_type: str, event_id: str, payload: str = '{"k":1}'
    ) -> nt.PublishEventResponse:
        """Publishes an event."""
        reply: nt.PublishEventResponse = await self.notifications.PublishEvent(
            nt.PublishEventRequest(
                parent=partner, event_type=event_type, event_id=event_id, payload_json=payload
            ),
            metadata=METADATA,
        )
        return reply

    async def attempts(self, parent: str) -> list[nt.DeliveryAttempt]:
        """Every attempt under ``parent``, oldest first."""
        reply = await self.notifications.ListDeliveryAttempts(
            nt.ListDeliveryAttemptsRequest(parent=parent, page_size=1000), metadata=METADATA
        )
        return list(reversed(reply.delivery_attempts))

    async def refresh(self, config: str, keep: bool) -> str:
        """Refreshes a secret; returns the new one."""
        reply = await self.secrets.RefreshSecret(
            sr.RefreshSecretRequest(name=config, keep_existing_secret_active=keep),
            metadata=METADATA,
        )
        return str(reply.secret)

    async def close(self) -> None:
        """Closes the channel."""
        await self.channel.close(None)


def partner() -> str:
    """A fresh partner name."""
    return f"partners/p-{uuid.uuid4().hex[:10]}"


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 20) -> Any:
    """Retries ``check`` (an assertion-raising coroutine) until it passes."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
