"""Every setting the code reads is documented in docs/configuration.md."""

from __future__ import annotations

from pathlib import Path

from service.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    missing = [
        f"HOOKKEEPER_{name.upper()}"
        for name in Settings.model_fields
        if f"HOOKKEEPER_{name.upper()}" not in text
    ]
    assert missing == []
