"""Settings read from ``HOOKKEEPER_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service can be configured with; see docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="HOOKKEEPER_", extra="ignore")

    var_dir: Path = Path("var")
    # A SecretStr: the URL may carry a password, and reprs must not show it.
    database_url: SecretStr = SecretStr("")
    grpc_listen: str = "127.0.0.1:50051"
    # `id:base64key` entries, comma-separated, oldest first: the last one seals.
    master_keys: SecretStr | None = None
    # `name=token` entries, comma-separated: all-access principals.
    service_tokens: SecretStr | None = None
    # TOML file of least-privilege principals (docs/security.md).
    service_principals_file: Path | None = None
    # Server TLS (PEM files, re-read when they change); with a client CA, mTLS.
    grpc_tls_cert_file: Path | None = None
    grpc_tls_key_file: Path | None = None
    grpc_tls_client_ca_file: Path | None = None
    # Plaintext gRPC on a non-loopback address is refused unless this is set.
    grpc_allow_plaintext: bool = False
    allow_insecure_callbacks: bool = False
    secret_validity_days: float = Field(default=365.0, gt=0)
    db_pool_size: int = Field(default=20, ge=1)
    # How long to wait for a new database connection (asyncpg's default is 60 s).
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # gRPC health probes the database this often while serving (5x a second
    # while it is away), docs/operations.md.
    db_health_interval_seconds: float = Field(default=1.0, gt=0)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    # Processes of `serve` and `dispatcher` (0: one per CPU); docs/workers.md.
    workers: int = Field(default=1, ge=0)
    # Read cache of `serve` on PostgreSQL (entry lifetime; 0 turns it off).
    read_cache_seconds: float = Field(default=10.0, ge=0)
    # Public GraphQL gateway (docs/gateway.md).
    gateway_listen: str = "127.0.0.1:8080"
    gateway_grpc_target: str = "127.0.0.1:50051"
    # The service token the gateway presents; in development, when unset, the
    # generated var/dev-service-tokens is read.
    gateway_service_token: SecretStr | None = None
    # The gateway as a TLS client: the CA that signed the service's
    # certificate, and (mTLS) the gateway's own certificate and key.
    gateway_grpc_tls_ca_file: Path | None = None
    gateway_grpc_tls_cert_file: Path | None = None
    gateway_grpc_tls_key_file: Path | None = None
    gateway_max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    gateway_max_query_depth: int = Field(default=10, ge=3)
    gateway_max_query_bytes: int = Field(default=64 * 1024, ge=1024)
    # Upper bound on one GraphQL request; a shorter `Request-Timeout` header wins.
    gateway_request_timeout_seconds: float = Field(default=10.0, gt=0)
    gateway_partner_cache_seconds: float = Field(default=30.0, ge=0)
    gateway_partner_cache_bytes: int = Field(default=4 * 1024 * 1024, ge=4096)
    gateway_document_cache_bytes: int = Field(default=8 * 1024 * 1024, ge=0)
    # `limits` notation: per partner (each mutation field is one operation)
    # and per client address for requests without a valid token.
    gateway_rate_limit: str = "50/second"
    gateway_anon_rate_limit: str = "5/second"
    # `memory://` (per gateway) or a redis:// URL shared by every gateway; a
    # SecretStr: the URL may carry a password.
    rate_limit_storage: SecretStr = SecretStr("memory://")
    # Notification delivery (docs/delivery.md).
    retry_interval_scale: float = Field(default=1.0, ge=0)
    dispatcher_enabled: bool = True  # run the dispatcher inside `hookkeeper serve`
    dispatcher_poll_interval_seconds: float = Field(default=0.25, gt=0)
    dispatcher_batch_size: int = Field(default=50, ge=1, le=1000)
    dispatcher_concurrency: int = Field(default=64, ge=1, le=1024)
    # Attempts in flight to one callback host (host:port) per dispatcher; 0:
    # a quarter of dispatcher_concurrency (docs/delivery.md says why).
    dispatcher_per_host_concurrency: int = Field(default=0, ge=0, le=1024)
    delivery_lease_margin_seconds: float = Field(default=30.0, gt=0)
    # The event loop of `hookkeeper dispatcher` (serve's stays asyncio's, for
    # grpc.aio): uvloop spends less CPU per delivery (docs/delivery.md).
    dispatcher_event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Endpoint health (docs/endpoint-health.md): a configuration whose every
    # attempt failed this many hours is disabled.
    disable_after_hours: float = Field(default=120.0, gt=0)
    # Expiry-warning mailer (docs/operations.md). Without an SMTP URL
    # `serve` runs no mailer; `hookkeeper mailer` refuses to start.
    smtp_url: SecretStr | None = None
    mail_from: str = "Hookkeeper <hookkeeper@localhost>"
    mailer_poll_seconds: float = Field(default=60.0, gt=0)
    mailer_retry_base_seconds: float = Field(default=30.0, gt=0)
    mailer_retry_max_seconds: float = Field(default=3600.0, gt=0)
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    # Logs: `json` (one object per line, with the trace id) or `text`.
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    # TESTS ONLY: shifts the process clock. Honoured only together with
    # HOOKKEEPER_UNSAFE_TEST_CLOCK=i-know-this-is-not-production (see
    # service/app/clock_offset.py); never set either in a deployment.
    unsafe_clock_offset_seconds: float = 0.0
    unsafe_test_clock: str = ""

    @field_validator(
        "service_principals_file",
        "grpc_tls_cert_file",
        "grpc_tls_key_file",
        "grpc_tls_client_ca_file",
        "gateway_grpc_tls_ca_file",
        "gateway_grpc_tls_cert_file",
        "gateway_grpc_tls_key_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `VAR=` (as compose writes `${VAR:-}`) means unset, not the current directory.
        return None if value == "" else value

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL, defaulting to an SQLite file under ``var_dir``."""
        if url := self.database_url.get_secret_value():
            return url
        return f"sqlite+aiosqlite:///{self.var_dir / 'hookkeeper.db'}"
