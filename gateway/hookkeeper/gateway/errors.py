"""GraphQL errors of the public API and their mapping from gRPC statuses.

Every error a partner sees has ``extensions.code``. Only messages written for
partners pass through; anything unexpected becomes ``INTERNAL`` with a fixed
message, its details going to the gateway's log instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import grpc
from google.rpc import error_details_pb2
from graphql import GraphQLError
from grpc_status import rpc_status

_log = logging.getLogger(__name__)

BAD_USER_INPUT = "BAD_USER_INPUT"
NOT_FOUND = "NOT_FOUND"
UNAUTHENTICATED = "UNAUTHENTICATED"
FAILED_PRECONDITION = "FAILED_PRECONDITION"
INTERNAL = "INTERNAL"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
UNAVAILABLE = "UNAVAILABLE"
RATE_LIMITED = "RATE_LIMITED"
# Transport-level codes, named as Apollo Server names them (clients know them).
BAD_REQUEST = "BAD_REQUEST"
GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
OPERATION_RESOLUTION_FAILURE = "OPERATION_RESOLUTION_FAILURE"

INTERNAL_MESSAGE = "internal error"
UNAVAILABLE_MESSAGE = "the service is unavailable; retry later"


def api_error(code: str, message: str, **extensions: Any) -> GraphQLError:
    """A GraphQL error carrying ``extensions.code``."""
    return GraphQLError(message, extensions={"code": code, **extensions})


def unauthenticated(message: str) -> GraphQLError:
    """The partner is not (or no longer) authenticated."""
    return api_error(UNAUTHENTICATED, message)


def _field_violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    violations: list[tuple[str, str]] = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [(v.field, v.description) for v in bad.field_violations]
    return violations


def _input_path(field: str, fields: Mapping[str, str]) -> str:
    # Violations name proto paths (`callback_config.callback_url`); match the
    # longest known suffix so either spelling maps to the GraphQL input path.
    for candidate in (field, field.rsplit(".", 1)[-1]):
        if candidate in fields:
            return fields[candidate]
    return "input"


def from_rpc_error(
    error: grpc.aio.AioRpcError, fields: Mapping[str, str], what: str
) -> GraphQLError:
    """The GraphQL error for a failed RPC.

    ``fields`` maps the request's proto field paths onto GraphQL input paths
    (``callback_url`` → ``input.callbackUrl``); ``what`` names the resource
    for NOT_FOUND (e.g. ``callback configuration 1969…``).
    """
    code = error.code()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violations = [
            {"field": _input_path(field, fields), "description": description}
            for field, description in _field_violations(error)
        ] or [{"field": "input", "description": "is not valid"}]
        message = "; ".join(f"{v['field']}: {v['description']}" for v in violations)
        return api_error(
            BAD_USER_INPUT, message, field=violations[0]["field"], fieldViolations=violations
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return api_error(NOT_FOUND, f"{what} not found")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        # Domain precondition messages are written for callers and hold no secrets.
        return api_error(FAILED_PRECONDITION, error.details() or "failed precondition")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return api_error(DEADLINE_EXCEEDED, "the request's deadline passed; retry later")
    if code == grpc.StatusCode.UNAVAILABLE:
        return api_error(UNAVAILABLE, UNAVAILABLE_MESSAGE)
    # UNAUTHENTICATED here means the gateway's own service token was refused:
    # a deployment fault, not the partner's.
    _log.error("RPC failed with %s", code.name)
    return api_error(INTERNAL, INTERNAL_MESSAGE)


# graphql-core 3.3: "Variable '$input' has invalid value at .callbackUrl: …";
# 3.2: "Variable '$input' got invalid value … at 'input.callbackUrl'; …".
_VARIABLE_PATH = re.compile(
    r"^Variable '\$(?P<name>\w+)' has invalid value(?: at (?P<path>[.\w\[\]]+))?: "
    r"|^Variable '\$\w+' got invalid value .*? at '(?P<full>[^']+)'; ",
    re.DOTALL,
)
_VARIABLE = re.compile(r"^Variable '\$(?P<name>\w+)'")
# Coercing a field's argument while executing: "Argument 'pageSize' has
# invalid value: Expected variable '$pageSize' provided to non-null type
# 'Int!' not to be null." (a nullable variable given null for a required
# argument), or an argument literal graphql-core echoes whole.
_ARGUMENT = re.compile(r"^Argument '(?P<name>\w+)' has invalid value")


def _variable_error(variable: str, message: str) -> tuple[str, str]:
    """The input path of a bad variable and a message that repeats no value.

    graphql-core echoes the offending value ("…, found: {'apiKey': …}",
    "non-integer value: 'x'"); for the create input that value holds the API
    key, a secret, so only graphql-core's reason up to the value is kept.
    """
    path = _VARIABLE_PATH.match(message)
    if path is None:
        # "… of required type 'X!' was not provided." and the like name no value.
        return variable, message
    field = path["full"] or variable + (path["path"] or "")
    reason = message[path.end() :].split(": ", 1)[0].removesuffix(", found").rstrip(".")
    return field, f"Variable '${variable}' has an invalid value at '{field}': {reason}."


def classify(error: GraphQLError) -> dict[str, Any]:
    """The formatted error with a code, masking anything not meant for partners.

    Errors with a response path arose while executing; those without one are
    parse, validation, variable or operation-selection errors of the request.
    """
    extensions = error.extensions or {}
    if "code" in extensions:
        return dict(error.formatted)
    formatted = dict(error.formatted)
    message = error.message
    original = error.original_error
    if error.path is None and isinstance(original, ValueError | TypeError):
        # A custom scalar refused the request's value (a `LocalDateTime`
        # literal or variable that is no date): the caller's mistake, found
        # before anything ran; scalars' messages name the reason, not secrets.
        if match := _VARIABLE.match(message):
            field, formatted["message"] = _variable_error(match["name"], message)
            formatted["extensions"] = {"code": BAD_USER_INPUT, "field": field}
        else:
            formatted["extensions"] = {"code": GRAPHQL_VALIDATION_FAILED}
    elif match := _ARGUMENT.match(message):
        # The caller's mistake although it has a path; the text may echo a
        # literal (an API key), so the message is ours.
        name = match["name"]
        reason = "required, it may not be null" if "non-null type" in message else "invalid"
        formatted["message"] = f"Argument '{name}' has an invalid value: {reason}."
        formatted["extensions"] = {"code": BAD_USER_INPUT, "field": name}
    elif original is not None and not isinstance(original, GraphQLError):
        # An exception from a resolver: log its type, tell the partner nothing.
        _log.error(
            "unhandled %s in a resolver at %s",
            type(error.original_error).__name__,
            error.path,
            exc_info=error.original_error,
        )
        formatted["message"] = INTERNAL_MESSAGE
        formatted["extensions"] = {"code": INTERNAL}
    elif error.path is not None:
        formatted["extensions"] = {**extensions, "code": INTERNAL}
    elif message.startswith(("Unknown operation named", "Must provide operation name")):
        formatted["extensions"] = {"code": OPERATION_RESOLUTION_FAILURE}
    elif message.startswith("Syntax Error"):
        formatted["extensions"] = {"code": GRAPHQL_PARSE_FAILED}
    elif match := _VARIABLE.match(message):
        field, formatted["message"] = _variable_error(match["name"], message)
        formatted["extensions"] = {"code": BAD_USER_INPUT, "field": field}
    else:
        formatted["extensions"] = {"code": GRAPHQL_VALIDATION_FAILED}
    return formatted
