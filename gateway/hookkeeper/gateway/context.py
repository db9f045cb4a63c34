"""What every resolver gets as ``info.context``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from hookkeeper.gateway import rpc
from hookkeeper.gateway.documents import Prepared
from hookkeeper.gateway.errors import unauthenticated

Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclass(frozen=True)
class GatewayContext:
    """The authenticated partner and the means to call the service for it."""

    # `partners/{partner}`, or None for a request without a token (allowed
    # only for schema introspection; resolvers call require_partner()).
    partner: str | None
    stubs: rpc.Stubs
    options: rpc.CallOptions
    # The request's document, parsed and sized by the gateway before it runs
    # (strawberry runs this one instead of parsing the text again).
    prepared: Prepared | None = None

    def require_partner(self) -> str:
        """The partner's resource name; UNAUTHENTICATED without one."""
        if self.partner is None:
            raise unauthenticated("send Authorization: Bearer <partner token>")
        return self.partner

    async def call(
        self,
        method: Callable[..., Resp],
        request: Req,
        *,
        fields: Mapping[str, str] | None = None,
        what: str = "resource",
    ) -> Resp:
        """One RPC with this request's metadata and deadline (see ``rpc.call``)."""
        return await rpc.call(method, request, self.options, fields=fields, what=what)
