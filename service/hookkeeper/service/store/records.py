"""Rows as the store hands them to the layer above."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hookkeeper.service.crypto.keyring import Sealed


@dataclass(frozen=True)
class ConfigRecord:
    """A callback_configs row; the API key stays sealed."""

    id: str
    partner_id: str
    callback_url: str
    contact_email: str
    request_timeout_seconds: int
    api_key: Sealed
    secret_expire_time: datetime
    create_time: datetime
    update_time: datetime
    signature_scheme: str = "EXPEDIA_V2"
    state: str = "ACTIVE"
    disable_reason: str | None = None
    disable_time: datetime | None = None
    max_deliveries_per_second: int | None = None


@dataclass(frozen=True)
class SecretRecord:
    """A callback_secrets row; the secret stays sealed."""

    id: str
    callback_config_id: str
    sealed: Sealed
    create_time: datetime
    expire_time: datetime
    retire_time: datetime | None
