"""Stored rows for repository tests: a configuration and its first secret,
with stand-in ciphertext (these tests exercise storage, not sealing)."""

from __future__ import annotations

from datetime import UTC, datetime

from hookkeeper.service.crypto.keyring import Sealed
from hookkeeper.service.store.records import ConfigRecord, SecretRecord


def config_and_secret(config_id: str, partner_id: str) -> tuple[ConfigRecord, SecretRecord]:
    """A configuration row and a secret row of it (id ``s-<config_id>``)."""
    now = datetime.now(UTC)
    config = ConfigRecord(
        id=config_id,
        partner_id=partner_id,
        callback_url="https://hooks.example.com/x",
        contact_email="ops@example.com",
        request_timeout_seconds=30,
        api_key=Sealed("k1", b"sealed api key"),
        secret_expire_time=now,
        create_time=now,
        update_time=now,
        signature_scheme="EXPEDIA_V2",
        max_deliveries_per_second=None,
    )
    secret = SecretRecord(
        id=f"s-{config_id}",
        callback_config_id=config_id,
        sealed=Sealed("k1", b"sealed secret"),
        create_time=now,
        expire_time=now,
        retire_time=None,
    )
    return config, secret
