"""gRPC transport of AuditService."""

from __future__ import annotations

from typing import Any

import grpc

from hookkeeper.notifications.v1 import audit_pb2 as pb
from hookkeeper.notifications.v1 import audit_pb2_grpc as pb_grpc
from hookkeeper.service.api.convert import timestamp
from hookkeeper.service.app import caller
from hookkeeper.service.app.audit import AuditTrail
from hookkeeper.service.domain.audit import AuditEvent
from hookkeeper.service.domain.names import parse_partner

Context = grpc.aio.ServicerContext[Any, Any]
_EVERY_PARTNER = "partners/-"


def audit_event_message(event: AuditEvent) -> pb.AuditEvent:
    """The protobuf view of an audit event."""
    return pb.AuditEvent(
        name=f"partners/{event.partner_id or '-'}/auditEvents/{event.id}",
        sequence=event.seq or 0,
        event_time=timestamp(event.event_time),
        actor=event.actor,
        action=event.action,
        resource=event.resource,
        outcome=event.outcome,
        trace_id=event.trace_id,
        count=event.count,
        hash=event.hash or "",
    )


class AuditServicer(pb_grpc.AuditServiceServicer):
    """Serves AuditService over the AuditTrail use cases."""

    def __init__(self, trail: AuditTrail) -> None:
        self._trail = trail

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: Context
    ) -> pb.ListAuditEventsResponse:
        """Returns a page of events the caller may see, newest first."""
        partner_id = None if request.parent == _EVERY_PARTNER else parse_partner(request.parent)
        events, token = await self._trail.list_page(
            caller.current(), partner_id, request.filter, request.page_size, request.page_token
        )
        return pb.ListAuditEventsResponse(
            audit_events=[audit_event_message(e) for e in events], next_page_token=token
        )
