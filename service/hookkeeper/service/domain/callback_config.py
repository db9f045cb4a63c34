"""Callback configurations: the fields a partner sets and the rules on them."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime

from hookkeeper.service.domain import validation as v
from hookkeeper.service.domain.errors import FieldViolation, invalid
from hookkeeper.service.domain.names import ConfigName
from hookkeeper.service.domain.throttling import MAX_RATE

UPDATABLE_FIELDS = (
    "callback_url",
    "api_key",
    "contact_email",
    "request_timeout_seconds",
    "max_deliveries_per_second",
)
# Accepted in an update mask only to say "unchanged": immutable after create.
IMMUTABLE_FIELDS = ("signature_scheme",)

EXPEDIA_V2 = "EXPEDIA_V2"
STANDARD_WEBHOOKS = "STANDARD_WEBHOOKS"
SIGNATURE_SCHEMES = (EXPEDIA_V2, STANDARD_WEBHOOKS)


@dataclass(frozen=True)
class ConfigFields:
    """The partner-settable fields. ``None`` timeout means "the default"."""

    callback_url: str = ""
    api_key: str = ""
    contact_email: str = ""
    request_timeout_seconds: int | None = None
    # None: unlimited.
    max_deliveries_per_second: int | None = None
    # None: not given (EXPEDIA_V2 on create, unchanged on update).
    signature_scheme: str | None = None

    def __repr__(self) -> str:
        # The API key is a credential: never in a repr, a log or a traceback.
        return (
            f"ConfigFields(callback_url={self.callback_url!r}, api_key=<redacted>, "
            f"contact_email={self.contact_email!r}, "
            f"request_timeout_seconds={self.request_timeout_seconds!r}, "
            f"max_deliveries_per_second={self.max_deliveries_per_second!r}, "
            f"signature_scheme={self.signature_scheme!r})"
        )

    @property
    def timeout(self) -> int:
        """The effective request timeout."""
        if self.request_timeout_seconds is None:
            return v.DEFAULT_TIMEOUT_SECONDS
        return self.request_timeout_seconds

    @property
    def scheme(self) -> str:
        """The effective signature scheme of a new configuration."""
        return self.signature_scheme or EXPEDIA_V2


@dataclass(frozen=True)
class CallbackConfig:
    """A stored configuration as callers see it (the API key is never read back)."""

    name: ConfigName
    callback_url: str
    contact_email: str
    request_timeout_seconds: int
    secret_expire_time: datetime
    create_time: datetime
    update_time: datetime
    signature_scheme: str = EXPEDIA_V2
    state: str = "ACTIVE"
    disable_reason: str | None = None
    disable_time: datetime | None = None
    max_deliveries_per_second: int | None = None


def check_rate(value: int | None, field: str) -> FieldViolation | None:
    """Unset (unlimited) or 1 to 10000 per second."""
    if value is None or 1 <= value <= MAX_RATE:
        return None
    return FieldViolation(field, f"must be between 1 and {MAX_RATE}, or unset for no limit")


def check_scheme_unchanged(current: str, given: str | None, field: str) -> None:
    """INVALID_ARGUMENT naming ``field`` when an update would change the scheme."""
    if given is not None and given != current:
        raise invalid(field, f"is immutable: the configuration signs with {current}")


def validate_fields(
    values: ConfigFields, names: tuple[str, ...], *, allow_insecure: bool, prefix: str
) -> None:
    """Checks the named fields, raising one InvalidArgument with every violation."""
    checks = {
        "callback_url": lambda: v.check_callback_url(
            values.callback_url, allow_insecure=allow_insecure, field=prefix + "callback_url"
        ),
        "api_key": lambda: v.check_api_key(values.api_key, prefix + "api_key"),
        "contact_email": lambda: v.check_contact_email(
            values.contact_email, prefix + "contact_email"
        ),
        "request_timeout_seconds": lambda: v.check_request_timeout(
            values.timeout, prefix + "request_timeout_seconds"
        ),
        "max_deliveries_per_second": lambda: check_rate(
            values.max_deliveries_per_second, prefix + "max_deliveries_per_second"
        ),
    }
    v.raise_if_any(checks[name]() for name in names)


def validate_new(values: ConfigFields, *, allow_insecure: bool) -> None:
    """Validates every field of a configuration to create."""
    validate_fields(
        values, UPDATABLE_FIELDS, allow_insecure=allow_insecure, prefix="callback_config."
    )


def fields_to_update(mask: list[str], given: ConfigFields) -> tuple[str, ...]:
    """Resolves an update mask (AIP-134): explicit paths, ``*``, or, when empty,
    every field given a non-default value."""
    if not mask:
        return tuple(
            f.name
            for f in fields(given)
            if f.name in UPDATABLE_FIELDS and getattr(given, f.name) not in ("", None)
        )
    if mask == ["*"]:
        return UPDATABLE_FIELDS
    unknown = sorted(set(mask) - set(UPDATABLE_FIELDS) - set(IMMUTABLE_FIELDS))
    if unknown:
        raise invalid(
            "update_mask",
            f"cannot update {', '.join(unknown)}; updatable: {', '.join(UPDATABLE_FIELDS)}",
        )
    return tuple(name for name in UPDATABLE_FIELDS if name in mask)


def merge(current: ConfigFields, given: ConfigFields, names: tuple[str, ...]) -> ConfigFields:
    """``current`` with the named fields taken from ``given``."""
    return replace(current, **{name: getattr(given, name) for name in names})
