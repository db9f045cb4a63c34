"""The gateway's HTTP side: ``POST /graphql`` runs operations, ``GET
/graphql`` opens GraphiQL, ``/graphql/static/`` serves its vendored assets,
``/healthz`` answers probes.

The HTTP handling is ours rather than strawberry's bundled view so every
failure, down to a malformed body, answers in one GraphQL error shape with
``extensions.code``, and so authentication happens before anything runs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import strawberry
from graphql import DocumentNode, FieldNode, GraphQLError, OperationDefinitionNode, parse
from opentelemetry import propagate, trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from strawberry.schema.exceptions import CannotGetOperationTypeError

from hookkeeper.gateway import auth, errors, rpc
from hookkeeper.gateway.context import GatewayContext
from hookkeeper.gateway.graphiql import CONTENT_SECURITY_POLICY, STATIC, graphiql_page

_log = logging.getLogger(__name__)

_TRACE_HEADERS = ("traceparent", "tracestate")
_LIMIT_ERROR = re.compile(r"exceeds maximum operation depth|aliases found. Allowed")
# HTTP status when the partner could not be authenticated for a reason other
# than a bad token (nothing was executed).
_AUTH_FAILURE_STATUS = {errors.DEADLINE_EXCEEDED: 504, errors.UNAVAILABLE: 503}


@dataclass(frozen=True)
class GatewayConfig:
    """The gateway's knobs (from Settings in production, direct in tests)."""

    service_token: str = field(repr=False)  # a credential: never in a repr
    max_body_bytes: int
    request_timeout_seconds: float


def _error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    body = {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status_code=status, headers=headers or None)


def _unauthenticated(message: str) -> JSONResponse:
    return _error_response(
        401, errors.UNAUTHENTICATED, message, **{"WWW-Authenticate": 'Bearer realm="graphql"'}
    )


class _BadBody(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BadBody(413, f"the request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BadBody(413, f"the request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class _Operation:
    # Out of the repr: either may carry an API key (inline or as a variable).
    query: str = field(repr=False)
    variables: dict[str, Any] | None = field(repr=False)
    operation_name: str | None


def _operation(body: bytes) -> _Operation:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _BadBody(400, "the request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise _BadBody(400, 'the request body must be a JSON object: {"query": "..."}')
    query = payload.get("query")
    if not isinstance(query, str) or not query.strip():
        raise _BadBody(400, '"query" must be a non-empty string holding a GraphQL document')
    variables = payload.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise _BadBody(400, '"variables" must be a JSON object')
    name = payload.get("operationName")
    if name is not None and not isinstance(name, str):
        raise _BadBody(400, '"operationName" must be a string')
    return _Operation(query, variables, name or None)


@lru_cache(maxsize=256)
def _parsed(query: str) -> DocumentNode | None:
    try:
        return parse(query, max_tokens=5_000)
    except GraphQLError:
        return None


def _introspection_only(operation: _Operation) -> bool:
    """Whether the operation only asks about the schema (public, no token needed)."""
    document = _parsed(operation.query)
    if document is None:
        return False
    chosen = [
        d
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
        and (
            operation.operation_name is None
            or (d.name and d.name.value == operation.operation_name)
        )
    ]
    if len(chosen) != 1:
        return False
    return all(
        isinstance(selection, FieldNode) and selection.name.value.startswith("__")
        for selection in chosen[0].selection_set.selections
    )


def _budget(request: Request, ceiling: float) -> float:
    # A client may ask for less time than the gateway's ceiling, never more.
    header = request.headers.get("request-timeout")
    if header:
        try:
            asked = float(header)
        except ValueError:
            return ceiling
        if 0 < asked < ceiling:
            return asked
    return ceiling


def _trace_headers(request: Request) -> dict[str, str]:
    """W3C trace context to forward to the RPCs.

    With tracing on (``service.telemetry``), the ASGI middleware has made a
    server span and the gRPC client interceptor injects its child's context
    into each call, so nothing is added here. With tracing off, the incoming
    ``traceparent``/``tracestate`` are passed through unchanged, so the
    service's spans and logs still join the caller's trace.
    """
    if trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=propagate.extract(request.headers))
    return {k: v for k, v in carrier.items() if k in _TRACE_HEADERS}


class Gateway:
    """Handles GraphQL over HTTP for one schema and one service channel."""

    def __init__(
        self,
        schema: strawberry.Schema,
        stubs: rpc.Stubs,
        config: GatewayConfig,
        cache: auth.PartnerCache,
    ) -> None:
        self.schema = schema
        self.stubs = stubs
        self.config = config
        self.authenticator = auth.Authenticator(stubs, cache)

    async def graphql(self, request: Request) -> Response:
        """``GET`` → GraphiQL; ``POST`` → run one operation."""
        if request.method == "GET":
            if "text/html" not in request.headers.get("accept", ""):
                return _error_response(
                    405, errors.BAD_REQUEST, "POST GraphQL operations as JSON", Allow="GET, POST"
                )
            return HTMLResponse(
                graphiql_page(str(request.url.path)),
                headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
            )
        try:
            operation = _operation(await _read_body(request, self.config.max_body_bytes))
        except _BadBody as bad:
            return _error_response(bad.status, errors.BAD_REQUEST, str(bad))
        options = rpc.call_options(
            self.config.service_token,
            _trace_headers(request),
            _budget(request, self.config.request_timeout_seconds),
        )
        token = auth.bearer_token(request.headers.get("authorization"))
        partner: str | None = None
        if token is not None:
            try:
                partner = await self.authenticator.partner(token, options)
            except GraphQLError as error:
                code = (error.extensions or {}).get("code")
                if code == errors.UNAUTHENTICATED:
                    return _unauthenticated(error.message)
                status = _AUTH_FAILURE_STATUS.get(str(code), 500)
                return _error_response(status, str(code), error.message)
        elif not _introspection_only(operation):
            return _unauthenticated(auth.MISSING)
        context = GatewayContext(partner=partner, stubs=self.stubs, options=options)
        try:
            result = await self.schema.execute(
                operation.query,
                variable_values=operation.variables,
                context_value=context,
                operation_name=operation.operation_name,
            )
        except CannotGetOperationTypeError:
            message = (
                f"Unknown operation named '{operation.operation_name}'."
                if operation.operation_name
                else "Must provide operation name if query contains multiple operations."
            )
            return _error_response(400, errors.OPERATION_RESOLUTION_FAILURE, message)
        found = result.errors or []
        executed = result.data is not None or any(e.path is not None for e in found)
        body: dict[str, Any] = {"data": result.data}
        if found:
            if not executed:
                # A too-deep (or too-large) document is refused as such; its
                # other validation errors would only be noise.
                found = [e for e in found if _LIMIT_ERROR.search(e.message)] or found
            body["errors"] = [errors.classify(e) for e in found]
        return JSONResponse(body, status_code=200 if executed else 400)

    async def healthz(self, _request: Request) -> Response:
        """Liveness: the process serves HTTP."""
        return PlainTextResponse("ok")


async def _unexpected(_request: Request, error: Exception) -> Response:
    # The last line of defence: the type goes to the log, nothing to the caller.
    _log.error("unhandled %s", type(error).__name__, exc_info=error)
    return _error_response(500, errors.INTERNAL, errors.INTERNAL_MESSAGE)


def create_app(
    schema: strawberry.Schema, stubs: rpc.Stubs, config: GatewayConfig, cache: auth.PartnerCache
) -> Starlette:
    """The ASGI application."""
    gateway = Gateway(schema, stubs, config, cache)
    routes = [
        Route("/graphql", gateway.graphql, methods=["GET", "POST"]),
        Mount("/graphql/static", app=StaticFiles(directory=STATIC, check_dir=False), name="static"),
        Route("/healthz", gateway.healthz, methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await stubs.close()

    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={Exception: _unexpected})
