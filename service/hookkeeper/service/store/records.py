"""Rows as the store hands them to the layer above, all in one place.

Secrets and API keys stay sealed in them; only the app layer opens them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hookkeeper.service.crypto.keyring import Sealed
from hookkeeper.service.domain.deliveries import DeliveryRecord, EventRecord


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


@dataclass(frozen=True)
class AccountRecord:
    """A stored partner account."""

    partner_id: str
    display_name: str
    create_time: datetime


# --- delivery -------------------------------------------------------------


@dataclass(frozen=True)
class TargetRecord:
    """What a sender needs of a configuration (the API key stays sealed)."""

    config_id: str
    callback_url: str
    request_timeout_seconds: int
    api_key: Sealed
    signature_scheme: str = "EXPEDIA_V2"

    def __repr__(self) -> str:
        return f"TargetRecord(config_id={self.config_id!r}, api_key=<sealed>)"


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery leased to one dispatcher, with everything needed to send it."""

    delivery: DeliveryRecord
    lease_token: str
    event: EventRecord | None
    # None when the configuration no longer exists.
    target: TargetRecord | None
    # Not before this moment (a reserved slot of max_deliveries_per_second).
    send_at: datetime | None = None
    # The target's secrets live at the claim, read with it (None: not read,
    # the signer reads them itself).
    secrets: tuple[SecretRecord, ...] | None = None


# --- expiry warnings ------------------------------------------------------


@dataclass(frozen=True)
class CurrentSecret:
    """A configuration's current secret, as the expiry-warning scheduler sees it."""

    secret_id: str
    callback_config_id: str
    create_time: datetime
    expire_time: datetime


@dataclass(frozen=True)
class ClaimedWarning:
    """A warning a mailer holds the lease of, with what the message needs."""

    id: str
    attempts: int
    threshold_days: int
    callback_config_id: str
    partner_id: str
    callback_url: str
    contact_email: str
    expire_time: datetime
