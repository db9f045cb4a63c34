"""``hookkeeper gateway``: the ASGI app under uvicorn, configured from Settings."""

from __future__ import annotations

import logging

import uvicorn
from limits.errors import ConfigurationError
from starlette.applications import Starlette

from hookkeeper.gateway import auth, rpc
from hookkeeper.gateway.app import GatewayConfig, create_app
from hookkeeper.gateway.backend import ServiceHealth
from hookkeeper.gateway.rate_limits import RateLimits, RateLimitSettings
from hookkeeper.gateway.schema import build_schema
from hookkeeper.service import bootstrap, telemetry
from hookkeeper.service.api.auth import parse_service_tokens
from hookkeeper.service.settings import Settings

_log = logging.getLogger(__name__)


def service_token(settings: Settings) -> str:
    """The service token the gateway presents: HOOKKEEPER_GATEWAY_SERVICE_TOKEN,
    else the first of HOOKKEEPER_SERVICE_TOKENS (one environment for both
    processes), else the generated development token in var/."""
    if settings.gateway_service_token is not None:
        return settings.gateway_service_token.get_secret_value()
    tokens = parse_service_tokens(bootstrap.load_service_tokens(settings))
    if not tokens:
        raise SystemExit("no service token: set HOOKKEEPER_GATEWAY_SERVICE_TOKEN")
    return next(iter(tokens))


def build_app(settings: Settings) -> Starlette:
    """The gateway application for these settings."""
    try:
        credentials = rpc.channel_credentials(
            settings.gateway_grpc_tls_ca_file,
            settings.gateway_grpc_tls_cert_file,
            settings.gateway_grpc_tls_key_file,
        )
    except (OSError, ValueError) as error:
        raise SystemExit(f"gateway TLS settings: {error}") from None
    stubs = rpc.Stubs(settings.gateway_grpc_target, telemetry.client_interceptors(), credentials)
    config = GatewayConfig(
        service_token=service_token(settings),
        max_body_bytes=settings.gateway_max_body_bytes,
        request_timeout_seconds=settings.gateway_request_timeout_seconds,
        max_query_bytes=settings.gateway_max_query_bytes,
    )
    cache = auth.PartnerCache(
        settings.gateway_partner_cache_seconds, settings.gateway_partner_cache_bytes
    )
    try:
        limits = RateLimits(
            RateLimitSettings(
                partner=settings.gateway_rate_limit,
                anonymous=settings.gateway_anon_rate_limit,
                storage_url=settings.rate_limit_storage.get_secret_value(),
            )
        )
    except (ValueError, ConfigurationError) as error:
        raise SystemExit(str(error)) from None
    schema = build_schema(settings.gateway_max_query_depth, settings.gateway_document_cache_bytes)
    health = ServiceHealth(stubs, settings.gateway_grpc_target)
    app = create_app(schema, stubs, config, cache, limits=limits, health=health)
    wrapped: Starlette = telemetry.wrap_asgi(app)
    return wrapped


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) → (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"HOOKKEEPER_GATEWAY_LISTEN must be host:port, not {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve(settings: Settings) -> None:
    """Serves until SIGTERM/SIGINT; uvicorn drains in-flight requests first."""
    host, port = split_listen(settings.gateway_listen)
    telemetry.configure("hookkeeper-gateway")
    app = build_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep the process's logging setup
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) or None,
        server_header=False,
        # The stock asyncio loop: grpc.aio is supported on it (not on uvloop);
        # HTTP parsing by httptools (C) rather than pure-Python h11.
        loop="asyncio",
        http="httptools",
    )
    _log.info(
        "serving GraphQL on http://%s:%d/graphql (service at %s)",
        host,
        port,
        settings.gateway_grpc_target,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        telemetry.shutdown()
