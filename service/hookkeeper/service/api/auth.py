"""Authentication and authorisation of internal callers (principals).

A caller is recognised by its bearer token (compared by SHA-256) or, without
a token, by the identity of its verified mTLS client certificate. A method or
partner outside the principal's globs is PERMISSION_DENIED before any servicer
code runs, so a denied call changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, cast

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from hookkeeper.service.api.tls import peer_identities
from hookkeeper.service.app import caller
from hookkeeper.service.domain.errors import Unavailable
from hookkeeper.service.domain.principals import Principal, all_access, partner_in, token_sha256

_log = logging.getLogger(__name__)

# Operators need these without a token: grpcurl list/describe and probes.
_OPEN_PREFIXES = ("/grpc.reflection.", "/grpc.health.")
# Request fields that hold resource names, at the top level or one message down.
_RESOURCE_FIELDS = frozenset({"name", "parent", "callback_config"})

Unary = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
# (actor, method, resource, partner id) of a denied call, for the audit trail.
DeniedHook = Callable[[str, str, str, str | None], Awaitable[None]]


class TokenError(ValueError):
    """HOOKKEEPER_SERVICE_TOKENS is malformed (the message never holds a token)."""


def parse_service_tokens(text: str) -> dict[str, str]:
    """Reads ``name=token,name=token`` into token → name."""
    tokens: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, sep, token = entry.partition("=")
        if not sep or not name or len(token) < 16:
            raise TokenError(
                "each service token entry must be name=token with a token of 16+ characters"
            )
        tokens[token] = name
    return tokens


def service_token_principals(text: str) -> list[Principal]:
    """Each ``HOOKKEEPER_SERVICE_TOKENS`` entry as an all-access principal."""
    return [all_access(name, token) for token, name in parse_service_tokens(text).items()]


def _deny(message: str) -> grpc.RpcMethodHandler[Any, Any]:
    async def abort(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.unary_unary_rpc_method_handler(abort)


def _refuse_streaming(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    message = "client-streaming methods are not authorised by this server"

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    kinds = {
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "stream_stream": grpc.stream_stream_rpc_method_handler,
    }
    kind = next(k for k in kinds if getattr(handler, k) is not None)
    return kinds[kind](
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _resources(message: Message, depth: int = 0) -> Iterable[str]:
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING and field.name in _RESOURCE_FIELDS:
            if not field.is_repeated:
                yield value
        elif field.type == FieldDescriptor.TYPE_MESSAGE and depth == 0 and not field.is_repeated:
            yield from _resources(value, depth + 1)


def request_partners(request: Message) -> tuple[str, list[str]]:
    """The request's main resource name (for the audit trail) and every partner
    id its resource names refer to (``partners/-`` refers to none)."""
    if not isinstance(request, Message):
        return "", []  # undecodable: the error choke point answers INVALID_ARGUMENT
    names = list(_resources(request))
    partners = [p for p in map(partner_in, names) if p is not None]
    return (names[0] if names else ""), partners


def _bearer(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            return value if isinstance(value, str) else ""
    return None


class AccessInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Lets a call through only for a known principal allowed the method and
    every partner the request names; runs the servicer as that principal."""

    def __init__(self, principals: Sequence[Principal], on_denied: DeniedHook | None = None):
        self._by_token = {p.token_sha256: p for p in principals if p.token_sha256}
        self._by_identity = {p.tls_identity: p for p in principals if p.tls_identity}
        self._on_denied = on_denied

    def _by_certificate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal | None:
        if not self._by_identity:
            return None
        for identity in peer_identities(context.auth_context()):
            if identity in self._by_identity:
                return self._by_identity[identity]
        return None

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """The real handler, wrapped in the principal's checks, for an open
        method or a known caller; otherwise a handler that aborts with
        UNAUTHENTICATED before any servicer code runs."""
        method = handler_call_details.method or ""
        if method.startswith(_OPEN_PREFIXES):
            return await continuation(handler_call_details)
        value = _bearer(handler_call_details.invocation_metadata)
        by_token: Principal | None = None
        if value is not None:
            if not value.startswith("Bearer "):
                return _deny("missing bearer token in the authorization metadata")
            by_token = self._by_token.get(token_sha256(value.removeprefix("Bearer ").strip()))
            if by_token is None:
                return _deny("the bearer token is not valid")
        elif not self._by_identity:
            return _deny("missing bearer token in the authorization metadata")
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # unknown method: UNIMPLEMENTED
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._guarded_stream(handler.unary_stream, method, by_token),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_unary is None:
            # Client-streaming requests name no resource before the first
            # message: such an RPC must get checks of its own, not pass unchecked.
            return _refuse_streaming(handler)
        return grpc.unary_unary_rpc_method_handler(
            self._guarded(cast(Unary, handler.unary_unary), method, by_token),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _authorise(
        self,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        method: str,
        by_token: Principal | None,
    ) -> Principal:
        """The caller's principal, once it may call ``method`` for every
        partner the request names; aborts (UNAUTHENTICATED or
        PERMISSION_DENIED) otherwise."""
        principal = by_token or self._by_certificate(context)
        if principal is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing bearer token in the authorization metadata",
            )
        assert principal is not None
        resource, partners = request_partners(request)
        if not principal.allows_method(method):
            await self._denied(
                context, principal, method, resource, None, f"may not call {method[1:]}"
            )
        for partner in partners:
            if not principal.allows_partner(partner):
                await self._denied(
                    context,
                    principal,
                    method,
                    resource,
                    partner,
                    f"may not act for partners/{partner}",
                )
        return principal

    def _guarded(self, inner: Unary, method: str, by_token: Principal | None) -> Unary:
        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            principal = await self._authorise(request, context, method, by_token)
            with caller.acting_as(principal):
                return await inner(request, context)

        return guarded

    def _guarded_stream(
        self, inner: Callable[..., Any], method: str, by_token: Principal | None
    ) -> Callable[..., AsyncIterator[Any]]:
        async def guarded(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            principal = await self._authorise(request, context, method, by_token)
            # No `with`: a stream may be closed from another context (cancelled).
            caller.act_for_this_task(principal)
            result = inner(request, context)
            if hasattr(result, "__aiter__"):
                async for item in result:
                    yield item
            else:
                await result  # a handler that writes with context.write

        return guarded

    async def _denied(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        principal: Principal,
        method: str,
        resource: str,
        partner: str | None,
        reason: str,
    ) -> None:
        if self._on_denied is not None:
            try:
                await self._on_denied(principal.name, method, resource, partner)
            except Unavailable:
                # The outage is logged once by the database's availability.
                _log.warning("a denied call of %s could not be audited: database away", method)
            except Exception:
                # The caller still gets PERMISSION_DENIED; the gap is logged.
                _log.exception("could not record a denied call in the audit trail")
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"principal {principal.name} {reason}",
        )
