"""Table definitions. Secrets and API keys are stored only as AES-GCM
ciphertext with the id of the key that sealed them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """UTC on the way in; naive in SQLite, which would drop an offset anyway."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """An aware UTC datetime, whatever zone (or none) the driver returned."""
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

partners = Table(
    "partners",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("create_time", UTCDateTime, nullable=False),
)

callback_configs = Table(
    "callback_configs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("partner_id", String(128), ForeignKey("partners.id"), nullable=False),
    Column("callback_url", Text, nullable=False),
    Column("contact_email", String(254), nullable=False),
    Column("request_timeout_seconds", Integer, nullable=False),
    Column("api_key_key_id", String(64), nullable=False),
    Column("api_key_ciphertext", LargeBinary, nullable=False),
    # Denormalised from the current secret so Get is a single-row read.
    Column("secret_expire_time", UTCDateTime, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
    # Endpoint health (migration 0005): EXPEDIA_V2 or STANDARD_WEBHOOKS.
    Column("signature_scheme", String(24), nullable=False, server_default="EXPEDIA_V2"),
    # ACTIVE or DISABLED, why and since when.
    Column("state", String(16), nullable=False, server_default="ACTIVE"),
    Column("disable_reason", Text, nullable=True),
    Column("disable_time", UTCDateTime, nullable=True),
    # NULL: unlimited.
    Column("max_deliveries_per_second", Integer, nullable=True),
    Index("ix_callback_configs_partner_created", "partner_id", "create_time", "id"),
)

callback_secrets = Table(
    "callback_secrets",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "callback_config_id",
        String(36),
        ForeignKey("callback_configs.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("key_id", String(64), nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    Column("expire_time", UTCDateTime, nullable=False),
    # Set when a refresh replaced the secret: it stops signing then.
    Column("retire_time", UTCDateTime, nullable=True),
)
