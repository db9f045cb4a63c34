"""Text every layer below can carry: Unicode scalar values only.

Python strings may hold lone surrogates (``"\\ud800"``, e.g. from a JSON
``\\ud800`` escape); they cannot be encoded as UTF-8, so they would fail
later, in the database driver or on the wire, as an internal error. They are
refused here, at the edge of the domain, naming the field.
"""

from __future__ import annotations

import re

from hookkeeper.service.domain.errors import FieldViolation

_SURROGATE = re.compile("[\ud800-\udfff]")


def is_scalar_text(value: str) -> bool:
    """Whether every code point of ``value`` is a Unicode scalar value."""
    return value.isascii() or _SURROGATE.search(value) is None


def check_scalar_text(value: str, field: str) -> FieldViolation | None:
    """A violation naming ``field`` when ``value`` holds a lone surrogate."""
    if is_scalar_text(value):
        return None
    return FieldViolation(field, "must be valid Unicode (it holds a lone surrogate)")
