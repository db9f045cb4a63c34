"""AES-256-GCM encryption at rest under a rotating keyring of master keys.

Every sealed value carries the id of the key that sealed it, so old rows keep
opening after a new key is added, and ``hookkeeper keys rotate`` can find the
rows still sealed under an older key.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12
_KEY_BYTES = 32


class KeyringError(Exception):
    """The keyring is misconfigured or a value cannot be opened.

    Messages name key ids only, never key material or plaintext.
    """


@dataclass(frozen=True)
class MasterKey:
    """One 256-bit master key and its id."""

    key_id: str
    material: bytes

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"


@dataclass(frozen=True)
class Sealed:
    """A sealed value: the sealing key's id and ``nonce || ciphertext || tag``."""

    key_id: str
    blob: bytes


class Keyring:
    """The master keys in force; the last one seals, every one opens."""

    def __init__(self, keys: list[MasterKey]) -> None:
        if not keys:
            raise KeyringError("the keyring has no keys")
        ids = [k.key_id for k in keys]
        if len(set(ids)) != len(ids):
            raise KeyringError("the keyring has duplicate key ids")
        self._ciphers = {k.key_id: AESGCM(k.material) for k in keys}
        self.primary_key_id = keys[-1].key_id
        # Newest first: the first derived key is the one to sign with.
        self._materials = [k.material for k in reversed(keys)]

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """Reads ``id:base64key,id:base64key`` (oldest first)."""
        keys = []
        for entry in filter(None, (e.strip() for e in text.split(","))):
            key_id, sep, encoded = entry.partition(":")
            if not sep or not key_id:
                raise KeyringError("a keyring entry is not of the form id:base64key")
            try:
                material = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                raise KeyringError(f"key {key_id!r} is not valid Base64") from None
            if len(material) != _KEY_BYTES:
                raise KeyringError(f"key {key_id!r} is not 32 bytes")
            keys.append(MasterKey(key_id, material))
        return cls(keys)

    @property
    def key_ids(self) -> list[str]:
        """Ids of every key that can open values."""
        return list(self._ciphers)

    def derive_keys(self, purpose: bytes) -> list[bytes]:
        """One 256-bit key per master key for ``purpose`` (HKDF-SHA256, the
        purpose as info), primary first: keys for other uses (page tokens)
        without configuring anything new, and independent of the sealing keys."""
        return [
            HKDF(algorithm=hashes.SHA256(), length=_KEY_BYTES, salt=None, info=purpose).derive(m)
            for m in self._materials
        ]

    def seal(self, plaintext: bytes, associated_data: bytes) -> Sealed:
        """Encrypts under the primary key, bound to ``associated_data``."""
        nonce = os.urandom(_NONCE_BYTES)
        cipher = self._ciphers[self.primary_key_id]
        ciphertext = cipher.encrypt(nonce, plaintext, associated_data)
        return Sealed(self.primary_key_id, nonce + ciphertext)

    def open(self, sealed: Sealed, associated_data: bytes) -> bytes:
        """Decrypts a value; fails if it was moved to another row or tampered with."""
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise KeyringError(f"key {sealed.key_id!r} is not in the keyring")
        nonce, body = sealed.blob[:_NONCE_BYTES], sealed.blob[_NONCE_BYTES:]
        try:
            return cipher.decrypt(nonce, body, associated_data)
        except InvalidTag:
            raise KeyringError(
                f"a value sealed under key {sealed.key_id!r} failed authentication"
            ) from None


def generate_key_entry(now: datetime | None = None) -> str:
    """A new ``id:base64key`` entry to append to HOOKKEEPER_MASTER_KEYS."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d")
    key_id = f"k{stamp}-{secrets.token_hex(3)}"
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"
