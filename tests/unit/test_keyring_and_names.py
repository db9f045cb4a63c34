"""Encryption at rest, resource names and page tokens."""

from __future__ import annotations

import pytest

from hookkeeper.service.crypto.keyring import Keyring, KeyringError, generate_key_entry
from hookkeeper.service.domain.errors import InvalidArgument
from hookkeeper.service.domain.names import parse_config, parse_partner


def test_seal_and_open_round_trip_under_rotation() -> None:
    old = generate_key_entry()
    ring = Keyring.parse(old)
    sealed = ring.seal(b"secret-value", b"row-1")
    assert b"secret-value" not in sealed.blob
    rotated = Keyring.parse(old + "," + generate_key_entry())
    assert rotated.primary_key_id != sealed.key_id
    assert rotated.open(sealed, b"row-1") == b"secret-value"
    assert rotated.seal(b"x", b"row-1").key_id == rotated.primary_key_id


def test_ciphertext_is_bound_to_its_row() -> None:
    ring = Keyring.parse(generate_key_entry())
    sealed = ring.seal(b"secret-value", b"row-1")
    with pytest.raises(KeyringError) as caught:
        ring.open(sealed, b"row-2")
    assert "secret-value" not in str(caught.value)


def test_unknown_key_and_bad_entries_are_refused() -> None:
    sealed = Keyring.parse(generate_key_entry()).seal(b"v", b"a")
    with pytest.raises(KeyringError, match="not in the keyring"):
        Keyring.parse(generate_key_entry()).open(sealed, b"a")
    for bad in ["", "nocolon", "k1:not-base64!", "k1:c2hvcnQ="]:
        with pytest.raises(KeyringError):
            Keyring.parse(bad)


def test_names() -> None:
    assert parse_partner("partners/acme-1") == "acme-1"
    name = parse_config("partners/acme/callbackConfigs/1969081F-8380-4dbd-9a19-c26fc1747b06")
    assert name.config_id == "1969081f-8380-4dbd-9a19-c26fc1747b06"
    assert str(name) == "partners/acme/callbackConfigs/1969081f-8380-4dbd-9a19-c26fc1747b06"
    for bad in ["acme", "partners/", "partners/a/b", "partners/../x"]:
        with pytest.raises(InvalidArgument):
            parse_partner(bad)
    with pytest.raises(InvalidArgument) as caught:
        parse_config("partners/acme/callbackConfigs/not-a-uuid")
    assert caught.value.violations[0].field == "name"
