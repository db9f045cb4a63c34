"""Resource names: ``partners/{partner}`` and
``partners/{partner}/callbackConfigs/{callback_config}``."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from hookkeeper.service.domain.errors import invalid

# Partner ids come from the platform's account system: letters, digits and
# `-`, `_`, `.`, starting with a letter or digit (UUIDs fit).
_PARTNER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PARTNER = re.compile(rf"partners/(?P<partner>{_PARTNER_ID.pattern})")
_CONFIG = re.compile(rf"{_PARTNER.pattern}/callbackConfigs/(?P<config>[^/]+)")


@dataclass(frozen=True)
class ConfigName:
    """A parsed callback configuration name."""

    partner_id: str
    config_id: str

    def __str__(self) -> str:
        return f"partners/{self.partner_id}/callbackConfigs/{self.config_id}"


def partner_name(partner_id: str) -> str:
    """The resource name of a partner."""
    return f"partners/{partner_id}"


def parse_partner(value: str, field: str = "parent") -> str:
    """The partner id of ``partners/{partner}``; INVALID_ARGUMENT naming ``field`` otherwise."""
    match = _PARTNER.fullmatch(value)
    if not match:
        raise invalid(field, "must be of the form partners/{partner}")
    return match["partner"]


def parse_config(value: str, field: str = "name") -> ConfigName:
    """Parses a configuration name whose id must be a UUID."""
    match = _CONFIG.fullmatch(value)
    if not match:
        raise invalid(field, "must be of the form partners/{partner}/callbackConfigs/{id}")
    try:
        config_id = str(uuid.UUID(match["config"]))
    except ValueError:
        raise invalid(field, "the callback configuration id must be a UUID") from None
    return ConfigName(match["partner"], config_id)


def new_config_id() -> str:
    """A new random configuration id (UUID 4)."""
    return str(uuid.uuid4())
