"""gRPC transport of PartnerService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import duration_pb2

from hookkeeper.notifications.v1 import partner_pb2 as pb
from hookkeeper.notifications.v1 import partner_pb2_grpc as pb_grpc
from hookkeeper.service.app.partners import Partners
from hookkeeper.service.domain.errors import invalid

Context = grpc.aio.ServicerContext[Any, Any]

# Watchers treat a few heartbeats of silence as a lost feed.
HEARTBEAT_SECONDS = 0.5


class PartnerServicer(pb_grpc.PartnerServiceServicer):
    """Serves PartnerService over the Partners use cases."""

    def __init__(self, partners: Partners) -> None:
        self._partners = partners

    async def AuthenticatePartner(
        self, request: pb.AuthenticatePartnerRequest, context: Context
    ) -> pb.AuthenticatePartnerResponse:
        """Resolves a partner token to its partner (NOT_FOUND when none holds it)."""
        if not request.token:
            raise invalid("token", "is required")
        partner = await self._partners.authenticate(request.token)
        return pb.AuthenticatePartnerResponse(
            partner=pb.Partner(name=partner.name, display_name=partner.display_name)
        )

    async def WatchTokenRevocations(
        self, request: pb.WatchTokenRevocationsRequest, context: Context
    ) -> AsyncIterator[pb.WatchTokenRevocationsResponse]:
        """Streams revoked partners' names (first an empty message, then one
        per revocation, and heartbeats); UNAVAILABLE while the feed is down."""
        heartbeat = duration_pb2.Duration()
        heartbeat.FromMilliseconds(int(HEARTBEAT_SECONDS * 1000))
        async for partners in self._partners.watch_revocations(HEARTBEAT_SECONDS):
            yield pb.WatchTokenRevocationsResponse(partners=partners, heartbeat_interval=heartbeat)
