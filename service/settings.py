"""Settings read from ``HOOKKEEPER_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service can be configured with; see docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="HOOKKEEPER_", extra="ignore")

    var_dir: Path = Path("var")
    database_url: str = ""
    grpc_listen: str = "127.0.0.1:50051"
    # `id:base64key` entries, comma-separated, oldest first: the last one seals.
    master_keys: SecretStr | None = None
    # `name=token` entries, comma-separated.
    service_tokens: SecretStr | None = None
    allow_insecure_callbacks: bool = False
    secret_validity_days: float = Field(default=365.0, gt=0)
    db_pool_size: int = Field(default=20, ge=1)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL, defaulting to an SQLite file under ``var_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.var_dir / 'hookkeeper.db'}"
