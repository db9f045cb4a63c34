"""Bearer-token authentication of internal callers (service tokens)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

# Operators need these without a token: grpcurl list/describe and probes.
_OPEN_PREFIXES = ("/grpc.reflection.", "/grpc.health.")


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


def _deny(message: str) -> grpc.RpcMethodHandler[Any, Any]:
    async def abort(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.unary_unary_rpc_method_handler(abort)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Lets a call through only with ``authorization: Bearer <known token>``."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens = [t.encode() for t in tokens]

    def _known(self, token: str) -> bool:
        offered = token.encode()
        # Compare against every token so timing says nothing about which matched.
        return any([hmac.compare_digest(offered, known) for known in self._tokens])

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """The real handler for an open method or a known token; otherwise a
        handler that aborts with UNAUTHENTICATED before any servicer code runs."""
        method = handler_call_details.method or ""
        if method.startswith(_OPEN_PREFIXES):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        value = metadata.get("authorization", "")
        if not isinstance(value, str) or not value.startswith("Bearer "):
            return _deny("missing bearer token in the authorization metadata")
        if not self._known(value.removeprefix("Bearer ").strip()):
            return _deny("the bearer token is not valid")
        return await continuation(handler_call_details)
