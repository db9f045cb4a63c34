"""The partner's own audit trail: every change to its configurations,
secrets, subscriptions and tokens, the signatures made with its secrets
(counted per minute), and calls refused for it. One AuditService RPC as the
partner (ListAuditEvents); docs/security.md."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

import strawberry

from hookkeeper.gateway.context import GatewayContext
from hookkeeper.gateway.scalars import LocalDateTime
from hookkeeper.notifications.v1 import audit_pb2 as pb
from hookkeeper.notifications.v1 import audit_pb2_grpc as pb_grpc

Info = strawberry.Info[GatewayContext, None]

INPUT_FIELDS = {"page_size": "pageSize", "page_token": "pageToken", "filter": "resource"}


def audit_stub(info: Info) -> pb_grpc.AuditServiceStub:
    """The AuditService stub of this request's channel."""
    return info.context.stubs.stub(pb_grpc.AuditServiceStub)


@strawberry.type(description="One recorded change, use of a secret, or refused call.")
class NotificationAuditEvent:
    """An audit event as partners see it."""

    sequence: int = strawberry.field(description="Position in the tamper-evident chain.")
    date_time: LocalDateTime = strawberry.field(
        description="When it happened (for counted signatures, the start of the minute)."
    )
    actor: str = strawberry.field(description="Who acted: the internal caller's name.")
    action: str = strawberry.field(
        description="What was done, e.g. callback_config.create, secret.refresh, secret.sign."
    )
    resource: str = strawberry.field(description="The resource acted on (its resource name).")
    outcome: str = strawberry.field(description="OK, or PERMISSION_DENIED for a refused call.")
    count: int = strawberry.field(
        description="How many uses the event stands for (signatures in its minute), else 1."
    )
    trace_id: str | None = strawberry.field(description="Trace id of the call, when traced.")

    @classmethod
    def from_message(cls, message: pb.AuditEvent) -> NotificationAuditEvent:
        """The GraphQL view of an event message."""
        return cls(
            sequence=message.sequence,
            date_time=LocalDateTime(message.event_time.ToDatetime(tzinfo=UTC)),
            actor=message.actor,
            action=message.action,
            resource=message.resource,
            outcome=message.outcome,
            count=message.count,
            trace_id=message.trace_id or None,
        )


@strawberry.type(description="A page of audit events, newest first.")
class NotificationAuditEventsPage:
    """One page of the partner's audit trail."""

    events: list[NotificationAuditEvent] = strawberry.field(
        description="The events of this page, newest first."
    )
    next_page_token: str | None = strawberry.field(
        description="Pass as pageToken for the next page; null on the last page."
    )


@strawberry.type
class Query:
    """The partner's audit trail."""

    @strawberry.field(
        description=(
            "The partner's audit trail, newest first: changes to its configurations, "
            "secrets, subscriptions and tokens, signatures (counted per minute), and "
            "refused calls; optionally only those of one resource."
        )
    )
    async def notification_audit_events(
        self,
        info: Info,
        resource: Annotated[
            str | None,
            strawberry.argument(
                description="Only events of this resource name, e.g. "
                "partners/{id}/callbackConfigs/{id}."
            ),
        ] = None,
        page_size: Annotated[
            int, strawberry.argument(description="Most events to return (at most 1000).")
        ] = 50,
        page_token: Annotated[
            str | None, strawberry.argument(description="nextPageToken of the previous page.")
        ] = None,
    ) -> NotificationAuditEventsPage:
        """ListAuditEvents of the partner."""
        ctx = info.context
        chosen = ""
        if resource is not None:
            if '"' in resource or "\\" in resource:
                chosen = 'resource = ""'  # matches nothing: no resource name holds quotes
            else:
                chosen = f'resource = "{resource}"'
        request = pb.ListAuditEventsRequest(
            parent=ctx.require_partner(),
            page_size=page_size,
            page_token=page_token or "",
            filter=chosen,
        )
        reply = await ctx.call(audit_stub(info).ListAuditEvents, request, fields=INPUT_FIELDS)
        return NotificationAuditEventsPage(
            events=[NotificationAuditEvent.from_message(e) for e in reply.audit_events],
            next_page_token=reply.next_page_token or None,
        )
