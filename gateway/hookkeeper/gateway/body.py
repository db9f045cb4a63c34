"""The body of ``POST /graphql``: read under a size limit, decoded as JSON,
and checked before anything else looks at it.

Every string in it must be valid Unicode (JSON's ``"\\ud800"`` decodes to a
lone surrogate that no UTF-8 encoder accepts, so it would fail deep inside
protobuf), and variables nest at most MAX_VARIABLE_DEPTH levels (JSON of
100,000 ``[`` overflows Python's stack). Each refusal names the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from hookkeeper.gateway import errors

# The public inputs nest three levels; payload objects travel as strings.
MAX_VARIABLE_DEPTH = 32
# The public operations are a few hundred characters long.
MAX_QUERY_BYTES = 64 * 1024


class BadBody(Exception):
    """A request body the gateway refuses; ``field`` names the culprit."""

    def __init__(
        self, status: int, message: str, code: str = errors.BAD_REQUEST, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field


@dataclass(frozen=True)
class Operation:
    """One GraphQL request: the document, its variables, the operation to run."""

    # Out of the repr: either may carry an API key (inline or as a variable).
    query: str = field(repr=False)
    variables: dict[str, Any] | None = field(repr=False)
    operation_name: str | None


async def read(request: Request, limit: int) -> bytes:
    """The whole body; 413 beyond ``limit`` bytes (declared or sent)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadBody(413, f"the request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadBody(413, f"the request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# A too-deep value is named by its first few object keys: enough to find it.
_NAMED_KEYS = 4


def _deep_field(path: str) -> str:
    keys = re.sub(r"\[\d+\]", "", path).split(".")
    return ".".join(keys[:_NAMED_KEYS])


def _unicode_error(path: str, variable: str | None) -> BadBody:
    reason = "is not valid Unicode (it holds an unpaired surrogate)"
    if variable is None:
        return BadBody(400, f'"{path}" {reason}', field=path)
    return BadBody(
        400,
        f"Variable '${variable}' has an invalid value at '{path}': {reason}.",
        code=errors.BAD_USER_INPUT,
        field=path,
    )


def _valid_unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_variables(variables: dict[str, Any]) -> None:
    """Walks the variables without recursion: depth and Unicode."""
    pending: list[tuple[str, str, Any, int]] = [(k, k, v, 1) for k, v in variables.items()]
    for name in variables:
        if not _valid_unicode(name):
            raise _unicode_error("variables", None)
    while pending:
        variable, path, value, depth = pending.pop()
        if isinstance(value, str):
            if not _valid_unicode(value):
                raise _unicode_error(path, variable)
        elif isinstance(value, dict | list):
            if depth >= MAX_VARIABLE_DEPTH:
                field = _deep_field(path)
                raise BadBody(
                    400,
                    f"Variable '${variable}' has an invalid value at '{field}': "
                    f"nests deeper than {MAX_VARIABLE_DEPTH} levels.",
                    code=errors.BAD_USER_INPUT,
                    field=field,
                )
            if isinstance(value, dict):
                for key, item in value.items():
                    if not _valid_unicode(key):
                        raise _unicode_error(path, variable)
                    pending.append((variable, f"{path}.{key}", item, depth + 1))
            else:
                pending.extend(
                    (variable, f"{path}[{index}]", item, depth + 1)
                    for index, item in enumerate(value)
                )


# JSON's structural tokens, a whole string being one token (the regex engine
# runs in C, so a long string costs one step, not one per character).
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]')


def _too_deep(text: str) -> BadBody:
    """The refusal of a body too deep for ``json`` to decode, naming the path
    (object keys only) down to where it passes MAX_VARIABLE_DEPTH."""
    keys: list[str | None] = []
    expecting_key: list[bool] = []
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in "{[":
            keys.append(None)
            expecting_key.append(token == "{")
            if len(keys) > MAX_VARIABLE_DEPTH + 1:  # the body object is level 0
                break
        elif token in "}]":
            if keys:
                keys.pop()
                expecting_key.pop()
        elif token == ",":
            if expecting_key and keys[-1] is not None:
                expecting_key[-1] = True
        elif expecting_key and expecting_key[-1]:
            try:
                keys[-1] = str(json.loads(token))
            except ValueError:
                keys[-1] = "?"
            expecting_key[-1] = False
    path = [k for k in keys if k is not None]
    if len(path) >= 2 and path[0] == "variables":
        field = _deep_field(".".join(path[1:]))
        return BadBody(
            400,
            f"Variable '${path[1]}' has an invalid value at '{field}': "
            f"nests deeper than {MAX_VARIABLE_DEPTH} levels.",
            code=errors.BAD_USER_INPUT,
            field=field,
        )
    where = ".".join(path) or "the request body"
    return BadBody(400, f'"{where}" nests deeper than {MAX_VARIABLE_DEPTH} levels', field=where)


def operation(body: bytes, max_query_bytes: int = MAX_QUERY_BYTES) -> Operation:
    """The operation in a JSON body; BadBody (400) naming what is wrong."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadBody(400, "the request body is not valid JSON") from None
    except RecursionError:
        raise _too_deep(body.decode("utf-8", "replace")) from None
    if not isinstance(payload, dict):
        raise BadBody(400, 'the request body must be a JSON object: {"query": "..."}')
    query = payload.get("query")
    if not isinstance(query, str) or not query.strip():
        raise BadBody(
            400, '"query" must be a non-empty string holding a GraphQL document', field="query"
        )
    if len(query) > max_query_bytes:
        # graphql-core lexes in Python, about 0.25 s per MB: a large document
        # is refused before it costs that. Large values belong in variables.
        raise BadBody(
            400,
            f'"query" exceeds {max_query_bytes} characters; pass large values '
            "(such as API keys) as variables",
            field="query",
        )
    if not _valid_unicode(query):
        raise _unicode_error("query", None)
    variables = payload.get("variables")
    if variables is not None:
        if not isinstance(variables, dict):
            raise BadBody(400, '"variables" must be a JSON object', field="variables")
        _check_variables(variables)
    name = payload.get("operationName")
    if name is not None:
        if not isinstance(name, str):
            raise BadBody(400, '"operationName" must be a string', field="operationName")
        if not _valid_unicode(name):
            raise _unicode_error("operationName", None)
    return Operation(query, variables, name or None)
