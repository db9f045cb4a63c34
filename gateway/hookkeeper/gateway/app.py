"""The gateway's HTTP side: ``POST /graphql`` runs operations, ``GET
/graphql`` opens GraphiQL, ``/graphql/static/`` serves its vendored assets,
``/healthz`` answers probes.

The HTTP handling is ours rather than strawberry's bundled view so every
failure, down to a malformed body, answers in one GraphQL error shape with
``extensions.code``, and so the order of work is ours. A request is, in turn:

1. authenticated from its headers alone (a cached token costs nothing; an
   unknown one costs one RPC, and only while the client address has
   unauthenticated requests left), before its body is even read;
2. refused early when the partner has no operations left or the service is
   down;
3. read (bounded), decoded and checked (nesting, Unicode), parsed under
   limits, and charged one operation per mutation field;
4. run.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import strawberry
from graphql import GraphQLError
from opentelemetry import propagate, trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from strawberry.schema.exceptions import CannotGetOperationTypeError

from hookkeeper.gateway import auth, body, errors, rpc
from hookkeeper.gateway.backend import RETRY_AFTER_SECONDS, ServiceHealth
from hookkeeper.gateway.context import GatewayContext
from hookkeeper.gateway.documents import DocumentCache, DocumentRefused
from hookkeeper.gateway.graphiql import CONTENT_SECURITY_POLICY, STATIC, graphiql_page
from hookkeeper.gateway.rate_limits import (
    DEFAULT_RATE_LIMITS,
    LimiterUnavailable,
    RateLimited,
    RateLimits,
)
from hookkeeper.gateway.revocations import RevocationWatcher
from hookkeeper.gateway.schema import GatewaySchema

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
    max_query_bytes: int = body.MAX_QUERY_BYTES


def _error_response(
    status: int, code: str, message: str, *, field: str | None = None, **headers: str
) -> JSONResponse:
    extensions = {"code": code, **({"field": field} if field else {})}
    reply = {"data": None, "errors": [{"message": message, "extensions": extensions}]}
    return JSONResponse(reply, status_code=status, headers=headers or None)


def _unauthenticated(message: str) -> JSONResponse:
    return _error_response(
        401, errors.UNAUTHENTICATED, message, **{"WWW-Authenticate": 'Bearer realm="graphql"'}
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


class _Refused(Exception):
    """A request answered with an error before anything ran."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _rate_limited(limited: RateLimited) -> _Refused:
    return _Refused(
        _error_response(
            429,
            errors.RATE_LIMITED,
            f"rate limit exceeded; retry after {limited.retry_after} s",
            **{"Retry-After": str(limited.retry_after)},
        )
    )


def _unavailable(message: str = errors.UNAVAILABLE_MESSAGE) -> _Refused:
    return _Refused(
        _error_response(
            503, errors.UNAVAILABLE, message, **{"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    )


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Gateway:
    """Handles GraphQL over HTTP for one schema and one service channel."""

    def __init__(
        self,
        schema: strawberry.Schema,
        stubs: rpc.Stubs,
        config: GatewayConfig,
        cache: auth.PartnerCache,
        *,
        documents: DocumentCache,
        limits: RateLimits,
        health: ServiceHealth,
    ) -> None:
        self.schema = schema
        self.stubs = stubs
        self.config = config
        self.authenticator = auth.Authenticator(stubs, cache)
        self.documents = documents
        self.limits = limits
        self.health = health

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
        options = rpc.call_options(
            self.config.service_token,
            _trace_headers(request),
            _budget(request, self.config.request_timeout_seconds),
        )
        try:
            partner = await self._authenticate(request, options)
            return await self._run(request, partner, options)
        except _Refused as refused:
            return refused.response
        except LimiterUnavailable:
            return _unavailable("the rate-limit store is unavailable; retry later").response

    async def _authenticate(self, request: Request, options: rpc.CallOptions) -> str:
        """The partner, from the headers alone; refuses everything else."""
        token = auth.bearer_token(request.headers.get("authorization"))
        address = _client_address(request)
        try:
            if token is None:
                await self.limits.anonymous_hit(address)
                raise _Refused(_unauthenticated(auth.MISSING))
            cached = self.authenticator.cached(token)
            if cached is not None:
                return cached
            # An unknown token costs an RPC: only while this address has
            # unauthenticated requests left (refusals are what count).
            await self.limits.anonymous_test(address)
        except RateLimited as limited:
            raise _rate_limited(limited) from None
        if not self.health.available:
            raise _unavailable()
        try:
            return await self.authenticator.partner(token, options)
        except GraphQLError as error:
            code = str((error.extensions or {}).get("code"))
            if code == errors.UNAUTHENTICATED:
                # This one is answered 401 either way; the next ones get 429.
                with contextlib.suppress(RateLimited):
                    await self.limits.anonymous_hit(address)
                raise _Refused(_unauthenticated(error.message)) from None
            if code == errors.UNAVAILABLE:
                raise _unavailable() from None
            status = _AUTH_FAILURE_STATUS.get(code, 500)
            raise _Refused(_error_response(status, code, error.message)) from None

    async def _run(self, request: Request, partner: str, options: rpc.CallOptions) -> Response:
        try:
            await self.limits.partner_test(partner)
        except RateLimited as limited:
            raise _rate_limited(limited) from None
        if not self.health.available:
            raise _unavailable()
        try:
            sent = await body.read(request, self.config.max_body_bytes)
            operation = body.operation(sent, self.config.max_query_bytes)
        except body.BadBody as bad:
            return _error_response(bad.status, bad.code, str(bad), field=bad.field)
        try:
            prepared = self.documents.prepare(operation.query, operation.operation_name)
        except DocumentRefused as refused:
            return _error_response(400, refused.code, str(refused))
        try:
            cost = prepared.root_fields if prepared.is_mutation else 1
            await self.limits.partner_hit(partner, cost)
        except RateLimited as limited:
            raise _rate_limited(limited) from None
        context = GatewayContext(
            partner=partner, stubs=self.stubs, options=options, prepared=prepared
        )
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
        return self._answer(result.data, result.errors or [])

    def _answer(self, data: dict[str, Any] | None, found: list[GraphQLError]) -> Response:
        executed = data is not None or any(e.path is not None for e in found)
        reply: dict[str, Any] = {"data": data}
        if not found:
            return JSONResponse(reply)
        if not executed:
            # A too-deep (or too-large) document is refused as such; its
            # other validation errors would only be noise.
            found = [e for e in found if _LIMIT_ERROR.search(e.message)] or found
        reply["errors"] = classified = [errors.classify(e) for e in found]
        codes = {e.get("extensions", {}).get("code") for e in classified}
        if errors.UNAVAILABLE in codes:
            # Nothing succeeded when every root field is null: the whole
            # request may be retried. Otherwise the partial answer stands,
            # with the hint.
            nothing_done = not data or all(v is None for v in data.values())
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            return JSONResponse(reply, status_code=503 if nothing_done else 200, headers=headers)
        return JSONResponse(reply, status_code=200 if executed else 400)

    async def healthz(self, _request: Request) -> Response:
        """Readiness: 200 while the service behind answers SERVING, else 503."""
        if self.health.available:
            return PlainTextResponse("ok")
        return PlainTextResponse(
            "service unavailable",
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


async def _unexpected(_request: Request, error: Exception) -> Response:
    # The last line of defence: the type goes to the log, nothing to the caller.
    _log.error("unhandled %s", type(error).__name__, exc_info=error)
    return _error_response(500, errors.INTERNAL, errors.INTERNAL_MESSAGE)


def create_app(
    schema: GatewaySchema,
    stubs: rpc.Stubs,
    config: GatewayConfig,
    cache: auth.PartnerCache,
    *,
    limits: RateLimits | None = None,
    health: ServiceHealth | None = None,
) -> Starlette:
    """The ASGI application (rate limits in memory at their defaults unless given)."""
    monitor = health or ServiceHealth(stubs, "the service")
    watcher = RevocationWatcher(stubs, cache, config.service_token)
    gateway = Gateway(
        schema,
        stubs,
        config,
        cache,
        documents=schema.documents,
        limits=limits or RateLimits(DEFAULT_RATE_LIMITS),
        health=monitor,
    )
    routes = [
        Route("/graphql", gateway.graphql, methods=["GET", "POST"]),
        Mount("/graphql/static", app=StaticFiles(directory=STATIC, check_dir=False), name="static"),
        Route("/healthz", gateway.healthz, methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        monitor.start()
        watcher.start()
        try:
            yield
        finally:
            await watcher.stop()
            await monitor.stop()
            await stubs.close()

    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={Exception: _unexpected})
