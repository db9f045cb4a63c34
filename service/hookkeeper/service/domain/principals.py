"""Principals: the internal callers of the gRPC API, each allowed some methods
for some partners (least privilege).

A principal is recognised by the SHA-256 of its bearer token and/or by an
identity (SAN or CN) of its mTLS client certificate. Methods are globs over
``package.Service/Method``, partners globs over partner ids (``*`` for all).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

ALL = "*"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}")
_KEYS = {"name", "token_sha256", "tls_identity", "methods", "partners"}
_PARTNER = re.compile(r"^partners/([^/]+)")


class PrincipalsError(ValueError):
    """The principals file is malformed; the message names the field."""


def token_sha256(token: str) -> str:
    """The hex SHA-256 of a bearer token, the form a principal stores."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """An internal caller and what it may do."""

    name: str
    methods: tuple[str, ...]
    partners: tuple[str, ...]
    token_sha256: str | None = None
    tls_identity: str | None = None

    def allows_method(self, method: str) -> bool:
        """Whether ``package.Service/Method`` (a leading ``/`` is ignored) is allowed."""
        method = method.lstrip("/")
        return any(fnmatchcase(method, glob) for glob in self.methods)

    def allows_partner(self, partner_id: str) -> bool:
        """Whether the principal may act for this partner."""
        return any(fnmatchcase(partner_id, glob) for glob in self.partners)

    @property
    def all_partners(self) -> bool:
        """Whether every partner is allowed (events of no partner are visible then)."""
        return ALL in self.partners


def all_access(name: str, token: str) -> Principal:
    """A ``HOOKKEEPER_SERVICE_TOKENS`` entry: every method for every partner."""
    return Principal(name, (ALL,), (ALL,), token_sha256=token_sha256(token))


def partner_in(resource: str) -> str | None:
    """The partner id of a resource name ``partners/{partner}/...``; None when
    the value is not one, and for the ``-`` wildcard of list calls."""
    match = _PARTNER.match(resource)
    if match is None or match[1] == "-":
        return None
    return match[1]


def _globs(entry: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = entry.get(key)
    if not isinstance(value, list) or not value:
        raise PrincipalsError(f"{where}.{key}: must be a non-empty list of globs")
    for glob in value:
        if not isinstance(glob, str) or not glob.strip():
            raise PrincipalsError(f"{where}.{key}: every glob must be a non-empty string")
        if "[" in glob:
            raise PrincipalsError(f"{where}.{key}: only * and ? wildcards are supported")
    return tuple(value)


def _optional(entry: dict[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise PrincipalsError(f"{where}.{key}: must be a non-empty string")
    return value.strip()


def _principal(entry: Any, where: str) -> Principal:
    if not isinstance(entry, dict):
        raise PrincipalsError(f"{where}: must be a table")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise PrincipalsError(f"{where}.{unknown[0]}: unknown key")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PrincipalsError(f"{where}.name: must be 1-100 letters, digits or ._:@-")
    where = f"{where} ({name})"
    digest = _optional(entry, "token_sha256", where)
    if digest is not None and not _HEX64.fullmatch(digest.lower()):
        raise PrincipalsError(f"{where}.token_sha256: must be 64 hex digits (never the token)")
    identity = _optional(entry, "tls_identity", where)
    if digest is None and identity is None:
        raise PrincipalsError(f"{where}: needs token_sha256 or tls_identity (or both)")
    return Principal(
        name=name,
        methods=_globs(entry, "methods", where),
        partners=_globs(entry, "partners", where),
        token_sha256=digest.lower() if digest else None,
        tls_identity=identity,
    )


def parse_principals(text: str, source: str = "principals") -> list[Principal]:
    """Reads a TOML document of ``[[principal]]`` tables; PrincipalsError
    naming the entry and field when anything is wrong."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PrincipalsError(f"{source}: not valid TOML: {error}") from None
    extra = sorted(set(document) - {"principal"})
    if extra:
        raise PrincipalsError(f"{source}: unknown top-level key {extra[0]!r}")
    entries = document.get("principal", [])
    if not isinstance(entries, list):
        raise PrincipalsError(f"{source}: principal must be an array of tables ([[principal]])")
    principals = [_principal(e, f"{source}: principal[{i}]") for i, e in enumerate(entries)]
    check_unique(principals)
    return principals


def check_unique(principals: Iterable[Principal]) -> None:
    """PrincipalsError when two principals share a name, token or identity."""
    seen: dict[str, str] = {}
    for principal in principals:
        for kind, value in (
            ("name", principal.name),
            ("token_sha256", principal.token_sha256),
            ("tls_identity", principal.tls_identity),
        ):
            if value is None:
                continue
            key = f"{kind}:{value}"
            if key in seen:
                raise PrincipalsError(
                    f"principal {principal.name}: {kind} is the same as principal {seen[key]}'s"
                )
            seen[key] = principal.name


def like_patterns(globs: Iterable[str]) -> list[str]:
    """SQL LIKE patterns (escape ``\\``) matching at least what the globs match
    (LIKE may ignore case; callers filter again with ``allows_partner``)."""
    patterns = []
    for glob in globs:
        escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        patterns.append(escaped.replace("*", "%").replace("?", "_"))
    return patterns
