"""The asyncio gRPC server: services, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from hookkeeper.notifications.v1 import (
    callback_config_pb2,
    callback_config_pb2_grpc,
    secret_rotation_pb2,
    secret_rotation_pb2_grpc,
)

from service.api.auth import BearerTokenInterceptor, parse_service_tokens
from service.api.callback_config_servicer import CallbackConfigServicer
from service.api.secret_rotation_servicer import SecretRotationServicer
from service.app.callback_configs import CallbackConfigs
from service.app.context import AppContext
from service.app.secret_rotation import SecretRotation

# grpc-stubs does not know the asyncio health servicer.
AioHealthServicer = health.aio.HealthServicer  # type: ignore[attr-defined]

_log = logging.getLogger(__name__)

SERVICE_NAMES = (
    callback_config_pb2.DESCRIPTOR.services_by_name["CallbackConfigService"].full_name,
    secret_rotation_pb2.DESCRIPTOR.services_by_name["SecretRotationService"].full_name,
)
# API keys may be up to 1 MiB; leave room for the rest of the message.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass
class RunningServer:
    """A started server, its bound port and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: Any

    async def stop(self, grace: float) -> None:
        """Reports NOT_SERVING, lets in-flight RPCs finish, then stops."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(ctx: AppContext, listen: str, service_tokens: str) -> RunningServer:
    """Builds and starts the server on ``listen`` (port 0 picks a free one)."""
    server = grpc.aio.server(
        interceptors=[BearerTokenInterceptor(parse_service_tokens(service_tokens))],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    callback_config_pb2_grpc.add_CallbackConfigServiceServicer_to_server(
        CallbackConfigServicer(CallbackConfigs(ctx)), server
    )
    secret_rotation_pb2_grpc.add_SecretRotationServiceServicer_to_server(
        SecretRotationServicer(SecretRotation(ctx)), server
    )
    health_servicer = AioHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    for name in (*SERVICE_NAMES, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, health_servicer)


async def serve_until_signalled(
    ctx: AppContext, listen: str, service_tokens: str, grace: float
) -> None:
    """Serves until SIGTERM or SIGINT, then shuts down gracefully."""
    running = await start_server(ctx, listen, service_tokens)
    _log.info("serving gRPC on %s (port %d)", listen, running.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    _log.info("shutting down: letting in-flight RPCs finish (grace %.1fs)", grace)
    await running.stop(grace)
    await ctx.database.close()
    _log.info("stopped")
