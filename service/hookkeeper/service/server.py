"""The asyncio gRPC server: services, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hookkeeper.notifications.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    callback_config_pb2,
    callback_config_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
    partner_pb2,
    partner_pb2_grpc,
    secret_rotation_pb2,
    secret_rotation_pb2_grpc,
)
from hookkeeper.service import telemetry
from hookkeeper.service.api.audit_servicer import AuditServicer
from hookkeeper.service.api.auth import AccessInterceptor, service_token_principals
from hookkeeper.service.api.callback_config_servicer import CallbackConfigServicer
from hookkeeper.service.api.errors import with_error_choke_point
from hookkeeper.service.api.health import follow_database
from hookkeeper.service.api.notification_servicer import NotificationServicer
from hookkeeper.service.api.partner_servicer import PartnerServicer
from hookkeeper.service.api.reflection import enable_server_reflection
from hookkeeper.service.api.secret_rotation_servicer import SecretRotationServicer
from hookkeeper.service.api.tls import (
    ReloadingCertificates,
    ServerTlsFiles,
    check_plaintext,
    server_tls_files,
)
from hookkeeper.service.app.audit import AuditTrail
from hookkeeper.service.app.callback_configs import CallbackConfigs
from hookkeeper.service.app.context import AppContext
from hookkeeper.service.app.notifications import Notifications
from hookkeeper.service.app.partners import Partners
from hookkeeper.service.app.secret_rotation import SecretRotation
from hookkeeper.service.delivery.runtime import default_notifications
from hookkeeper.service.domain.principals import (
    Principal,
    PrincipalsError,
    check_unique,
    parse_principals,
)
from hookkeeper.service.settings import Settings
from hookkeeper.service.startup_heap import freeze_startup_heap

# grpc-stubs does not know the asyncio health servicer.
AioHealthServicer = health.aio.HealthServicer  # type: ignore[attr-defined]

_log = logging.getLogger(__name__)

SERVICE_NAMES = (
    callback_config_pb2.DESCRIPTOR.services_by_name["CallbackConfigService"].full_name,
    secret_rotation_pb2.DESCRIPTOR.services_by_name["SecretRotationService"].full_name,
    partner_pb2.DESCRIPTOR.services_by_name["PartnerService"].full_name,
    notification_pb2.DESCRIPTOR.services_by_name["NotificationService"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
)
# API keys may be up to 1 MiB; leave room for the rest of the message.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ServerSecurity:
    """How callers reach and prove themselves: the TLS files (None serves
    plaintext, on loopback only unless ``allow_plaintext``) and the
    least-privilege principals beside the all-access service tokens."""

    tls: ServerTlsFiles | None = None
    allow_plaintext: bool = False
    principals: tuple[Principal, ...] = ()


def security_from_settings(settings: Settings) -> ServerSecurity:
    """The TLS files and principals the settings name (TlsConfigError or
    PrincipalsError when they are incomplete or malformed)."""
    principals: tuple[Principal, ...] = ()
    if (path := settings.service_principals_file) is not None:
        try:
            text = path.read_text()
        except OSError as error:
            raise PrincipalsError(f"{path}: {error.strerror}") from None
        principals = tuple(parse_principals(text, str(path)))
    return ServerSecurity(
        tls=server_tls_files(
            settings.grpc_tls_cert_file,
            settings.grpc_tls_key_file,
            settings.grpc_tls_client_ca_file,
        ),
        allow_plaintext=settings.grpc_allow_plaintext,
        principals=principals,
    )


# A probe that takes longer than this counts as the database being away.
_PROBE_TIMEOUT_SECONDS = 2.0


@dataclass
class RunningServer:
    """A started server, its bound port, its health servicer and the task
    keeping health in step with the database."""

    server: grpc.aio.Server
    port: int
    health: Any
    follower: asyncio.Task[None]
    # The reloading TLS credentials, when the server speaks TLS.
    certificates: ReloadingCertificates | None = None

    async def stop(self, grace: float) -> None:
        """Reports NOT_SERVING, lets in-flight RPCs finish, then stops."""
        self.follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.follower
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(
    ctx: AppContext,
    listen: str,
    service_tokens: str,
    notifications: Notifications | None = None,
    health_interval: float = 1.0,
    security: ServerSecurity | None = None,
) -> RunningServer:
    """Builds and starts the server on ``listen`` (port 0 picks a free one).
    ``notifications`` carries the process's HTTP sender and dispatcher wake-up
    (service/delivery/runtime.py); a default one is built when not given.
    Plaintext on a non-loopback address raises InsecureListenError unless
    ``security`` allows it; bad TLS files raise TlsConfigError.
    Health follows the database, probed every ``health_interval`` seconds."""
    security = security or ServerSecurity()
    principals = [*service_token_principals(service_tokens), *security.principals]
    check_unique(principals)
    certificates = ReloadingCertificates(security.tls) if security.tls else None
    if certificates is None:
        check_plaintext(listen, allow_plaintext=security.allow_plaintext)
    server = grpc.aio.server(
        # Telemetry first (empty when off), so rejected calls are traced too;
        # then the error choke point: mapping outside access control,
        # decoding inside it (api/errors.py).
        interceptors=[
            *telemetry.server_interceptors(),
            *with_error_choke_point(AccessInterceptor(principals, AuditTrail(ctx).denied)),
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Workers of `serve --workers N` share the port; the kernel spreads
            # connections across them (grpc's default on Linux, made explicit).
            ("grpc.so_reuseport", 1),
        ],
    )
    callback_config_pb2_grpc.add_CallbackConfigServiceServicer_to_server(
        CallbackConfigServicer(CallbackConfigs(ctx)), server
    )
    secret_rotation_pb2_grpc.add_SecretRotationServiceServicer_to_server(
        SecretRotationServicer(SecretRotation(ctx)), server
    )
    partner_pb2_grpc.add_PartnerServiceServicer_to_server(PartnerServicer(Partners(ctx)), server)
    notification_pb2_grpc.add_NotificationServiceServicer_to_server(
        NotificationServicer(notifications or default_notifications(ctx)), server
    )
    audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(AuditTrail(ctx)), server)
    health_servicer = AioHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME)
    enable_server_reflection(names, server)
    if certificates is not None:
        port = server.add_secure_port(listen, certificates.credentials())
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    for name in (*SERVICE_NAMES, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    follower = asyncio.create_task(
        follow_database(
            ctx.database, health_servicer, SERVICE_NAMES, health_interval, _PROBE_TIMEOUT_SECONDS
        )
    )
    return RunningServer(server, port, health_servicer, follower, certificates)


async def serve_until_signalled(
    ctx: AppContext,
    listen: str,
    service_tokens: str,
    grace: float,
    workers: Sequence[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = (),
    notifications: Notifications | None = None,
    health_interval: float = 1.0,
    security: ServerSecurity | None = None,
) -> None:
    """Serves until SIGTERM or SIGINT, then shuts down gracefully.

    Each of ``workers`` (e.g. the expiry mailer's ``run``) runs beside the
    server and is told to stop through the event it is given.
    """
    running = await start_server(
        ctx, listen, service_tokens, notifications, health_interval, security
    )
    freeze_startup_heap()
    _log.info(
        "serving gRPC on %s (port %d, %s)",
        listen,
        running.port,
        _transport(running.certificates),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    background = [asyncio.create_task(worker(stop)) for worker in workers]
    await stop.wait()
    _log.info("shutting down: letting in-flight RPCs finish (grace %.1fs)", grace)
    await asyncio.gather(running.stop(grace), _stop_workers(background, grace))
    await ctx.database.close()
    _log.info("stopped")


def _transport(certificates: ReloadingCertificates | None) -> str:
    if certificates is None:
        return "plaintext"
    return "mTLS" if certificates.files.client_ca else "TLS"


async def _stop_workers(tasks: list[asyncio.Task[None]], grace: float) -> None:
    """Waits up to ``grace`` for workers to finish what they hold, then cancels."""
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=grace)
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
