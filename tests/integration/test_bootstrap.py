"""Settings → dependencies: the development master key and service token
generated once under var/ (loudly, never silently), and the operator policy
read from the environment."""

from __future__ import annotations

import logging
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from hookkeeper.service import bootstrap
from hookkeeper.service.crypto.keyring import Keyring
from hookkeeper.service.settings import Settings


def test_without_master_keys_a_development_key_is_generated_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("HOOKKEEPER_MASTER_KEYS", raising=False)
    settings = Settings(var_dir=tmp_path / "var")
    with caplog.at_level(logging.WARNING, logger="hookkeeper.service.bootstrap"):
        first = bootstrap.load_keyring(settings)
        second = bootstrap.load_keyring(settings)
    key_file = tmp_path / "var" / "dev-master-key"
    entry = key_file.read_text().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # Generated once, then reused: values sealed by the first open with the second.
    assert first.primary_key_id == second.primary_key_id == entry.split(":")[0]
    sealed = first.seal(b"value", b"row")
    assert second.open(sealed, b"row") == b"value"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("DEVELOPMENT ONLY" in w and "HOOKKEEPER_MASTER_KEYS" in w for w in warnings)
    assert all(entry.split(":")[1] not in w for w in warnings)


def test_set_master_keys_generate_nothing(tmp_path: Path) -> None:
    entry = "k1:" + "A" * 43 + "="
    keyring = bootstrap.load_keyring(Settings(var_dir=tmp_path, master_keys=SecretStr(entry)))
    assert isinstance(keyring, Keyring) and keyring.key_ids == ["k1"]
    assert not (tmp_path / "dev-master-key").exists()


def test_without_service_tokens_a_development_token_is_generated_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOKKEEPER_SERVICE_TOKENS", raising=False)
    settings = Settings(var_dir=tmp_path)
    first = bootstrap.load_service_tokens(settings)
    assert first.startswith("dev=") and len(first) > 20
    assert bootstrap.load_service_tokens(settings) == first


def test_policy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKKEEPER_ALLOW_INSECURE_CALLBACKS", "true")
    monkeypatch.setenv("HOOKKEEPER_SECRET_VALIDITY_DAYS", "1.5")
    policy = bootstrap.policy(Settings())
    assert policy.allow_insecure_callbacks is True
    assert policy.secret_validity == timedelta(days=1.5)
    monkeypatch.delenv("HOOKKEEPER_ALLOW_INSECURE_CALLBACKS")
    monkeypatch.delenv("HOOKKEEPER_SECRET_VALIDITY_DAYS")
    default = bootstrap.policy(Settings())
    assert default.allow_insecure_callbacks is False
    assert default.secret_validity == timedelta(days=365)
