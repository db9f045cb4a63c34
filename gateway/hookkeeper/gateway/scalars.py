"""The custom scalars of the public schema: ``Url``, ``EmailAddress`` and
``LocalDateTime``.

``Url`` and ``EmailAddress`` accept any string on input: the service is the one
validator of both (RFC 3986 / HTML Standard rules plus operator policy such as
"https only"), and its field violations come back as ``BAD_USER_INPUT`` errors
naming the input field (``input.callbackUrl``). A second, looser check here
would only produce a different, vaguer error for the same mistake.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NewType

import strawberry
from graphql import GraphQLError
from strawberry.types.scalar import ScalarDefinition


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise GraphQLError("expected a string")  # a validation error, not an internal one
    return value


def format_local_date_time(moment: datetime) -> str:
    """``2007-12-03T10:15:30``: the instant in UTC, no offset, no fraction."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous")
    return moment.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat()


def parse_local_date_time(value: object) -> datetime:
    """Reads ``2007-12-03T10:15:30`` as an instant in UTC.

    Bad input raises GraphQLError, not ValueError: an input (``since`` of
    recoverNotificationDeliveries) is a partner's mistake, answered as a
    validation error, while a plain exception would read as an internal one.
    """
    try:
        parsed = datetime.fromisoformat(_string(value))
    except ValueError:
        raise GraphQLError(
            "LocalDateTime must be a date and time such as 2007-12-03T10:15:30 (UTC)"
        ) from None
    if parsed.tzinfo is not None:
        raise GraphQLError("LocalDateTime has no offset: it is always UTC")
    return parsed.replace(tzinfo=UTC)


Url = NewType("Url", str)
EmailAddress = NewType("EmailAddress", str)
LocalDateTime = NewType("LocalDateTime", datetime)

# Given to the schema's StrawberryConfig(scalar_map=...).
SCALAR_MAP: dict[object, ScalarDefinition] = {
    Url: strawberry.scalar(
        name="Url",
        description=(
            "Scalar type whose value conforms to the standard URL format as specified "
            "in RFC3986 specification."
        ),
        serialize=str,
        parse_value=_string,
    ),
    EmailAddress: strawberry.scalar(
        name="EmailAddress",
        description=(
            "A field whose value conforms to the standard internet email address format "
            "as specified in HTML Spec."
        ),
        serialize=str,
        parse_value=_string,
    ),
    LocalDateTime: strawberry.scalar(
        name="LocalDateTime",
        description="A type representing a date and time (such as 2007-12-03T10:15:30).",
        serialize=format_local_date_time,
        parse_value=parse_local_date_time,
    ),
}
