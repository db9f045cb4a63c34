"""Domain errors: what went wrong, in terms a caller can act on.

The transport maps each onto a status code. No message ever carries a secret,
an API key or a token.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path in the request and why it is bad."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""


class InvalidArgument(DomainError):
    """The request has one or more bad fields; nothing was changed."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))


class NotFound(DomainError):
    """The resource does not exist, or belongs to another partner."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"{name} not found")


class AlreadyExists(DomainError):
    """The resource to create exists already."""


class FailedPrecondition(DomainError):
    """The request is valid but the resource's state does not allow it."""


class Unavailable(DomainError):
    """A dependency (the database) cannot be reached; the caller may retry.

    The message is fixed by whoever raises it and never carries connection
    details (a database URL may hold a password).
    """


def invalid(field: str, description: str) -> InvalidArgument:
    """Shorthand for a single-field InvalidArgument."""
    return InvalidArgument([FieldViolation(field, description)])
