"""Every setting the code reads is documented in docs/configuration.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from hookkeeper.service.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    missing = [
        f"HOOKKEEPER_{name.upper()}"
        for name in Settings.model_fields
        if f"HOOKKEEPER_{name.upper()}" not in text
    ]
    assert missing == []


def test_settings_repr_hides_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKKEEPER_DATABASE_URL", "postgresql+asyncpg://app:hunter2-pw@db/hk")
    monkeypatch.setenv("HOOKKEEPER_SERVICE_TOKENS", "gw=token-value-0123456789")
    settings = Settings()
    assert settings.resolved_database_url() == "postgresql+asyncpg://app:hunter2-pw@db/hk"
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert "hunter2-pw" not in text
        assert "token-value-0123456789" not in text
