"""The partner's delivery log and redelivery: the attempts made to deliver
its notifications, and a new round of attempts for one that failed. Each is
one NotificationService RPC as the partner (ListDeliveryAttempts,
RedeliverNotification); shapes follow the style of the seed operations
(docs/delivery.md)."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

import strawberry

from hookkeeper.gateway.context import GatewayContext
from hookkeeper.gateway.notifications import notification_stub
from hookkeeper.gateway.scalars import LocalDateTime
from hookkeeper.notifications.v1 import notification_pb2 as pb

Info = strawberry.Info[GatewayContext, None]

INPUT_FIELDS = {
    "name": "input.deliveryId",
    "page_size": "pageSize",
    "page_token": "pageToken",
    "event_id": "eventId",
}


def _last_segment(name: str) -> strawberry.ID:
    return strawberry.ID(name.rsplit("/", 1)[-1])


@strawberry.type(description="One HTTP request made to deliver a notification, and its outcome.")
class NotificationDeliveryAttempt:
    """An attempt as partners see it; ids are the names' last segments."""

    id: strawberry.ID = strawberry.field(description="ID of the attempt.")
    delivery_id: strawberry.ID = strawberry.field(
        description="ID of the delivery (one per notification and configuration)."
    )
    event_id: str | None = strawberry.field(
        description="The event's id; null for connectivity checks."
    )
    event_type: str | None = strawberry.field(
        description="The event type; null for connectivity checks."
    )
    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of the callback configuration the request went to."
    )
    transaction_id: str = strawberry.field(
        description="The transactionId header sent: the same on every attempt of a delivery."
    )
    attempt_number: int = strawberry.field(description="1 for the first attempt, then 2, 3, ...")
    start_date_time: LocalDateTime = strawberry.field(description="When the request started.")
    latency_milliseconds: int = strawberry.field(
        description="Time from the start of the request to the answer or the failure."
    )
    http_status: int | None = strawberry.field(
        description="The HTTP status answered; null when no answer came."
    )
    succeeded: bool = strawberry.field(description="Whether the callback URL answered 2xx.")
    error: str | None = strawberry.field(description="Why the attempt failed; null on success.")

    @classmethod
    def from_message(cls, message: pb.DeliveryAttempt) -> NotificationDeliveryAttempt:
        """The GraphQL view of an attempt message."""
        return cls(
            id=_last_segment(message.name),
            delivery_id=_last_segment(message.delivery),
            event_id=message.event_id or None,
            event_type=message.event_type or None,
            callback_config_id=_last_segment(message.callback_config),
            transaction_id=message.transaction_id,
            attempt_number=message.attempt_number,
            start_date_time=LocalDateTime(message.start_time.ToDatetime(tzinfo=UTC)),
            latency_milliseconds=int(message.latency.ToTimedelta().total_seconds() * 1000),
            http_status=message.http_status or None,
            succeeded=message.succeeded,
            error=message.error or None,
        )


@strawberry.type(description="A page of delivery attempts, newest first.")
class NotificationDeliveryAttemptsPage:
    """One page of the partner's delivery log."""

    attempts: list[NotificationDeliveryAttempt] = strawberry.field(
        description="The attempts of this page, newest first."
    )
    next_page_token: str | None = strawberry.field(
        description="Pass as pageToken for the next page; null on the last page."
    )


@strawberry.input(description="The delivery to attempt again.")
class RedeliverNotificationInput:
    """Which delivery to start a new round of attempts for."""

    delivery_id: strawberry.ID = strawberry.field(
        description="ID of a delivered or failed delivery (see notificationDeliveryAttempts)."
    )


@strawberry.type(description="The delivery, queued for a new round of attempts.")
class RedeliverNotificationPayload:
    """Outcome of a redelivery request."""

    delivery_id: strawberry.ID = strawberry.field(description="ID of the delivery.")
    transaction_id: str = strawberry.field(
        description="The transactionId header its attempts carry (unchanged, for deduplication)."
    )


REDELIVER_INPUT = Annotated[
    RedeliverNotificationInput, strawberry.argument(description="Delivery to attempt again.")
]


@strawberry.type
class Query:
    """The partner's delivery log."""

    @strawberry.field(
        description=(
            "The attempts made to deliver the partner's notifications, newest first; "
            "optionally only those of one event id."
        )
    )
    async def notification_delivery_attempts(
        self,
        info: Info,
        event_id: Annotated[
            str | None, strawberry.argument(description="Only attempts for this event id.")
        ] = None,
        page_size: Annotated[
            int, strawberry.argument(description="Most attempts to return (at most 1000).")
        ] = 50,
        page_token: Annotated[
            str | None, strawberry.argument(description="nextPageToken of the previous page.")
        ] = None,
    ) -> NotificationDeliveryAttemptsPage:
        """ListDeliveryAttempts over every delivery of the partner."""
        ctx = info.context
        request = pb.ListDeliveryAttemptsRequest(
            parent=f"{ctx.require_partner()}/deliveries/-",
            page_size=page_size,
            page_token=page_token or "",
            event_id=event_id or "",
        )
        reply = await ctx.call(
            notification_stub(info).ListDeliveryAttempts, request, fields=INPUT_FIELDS
        )
        return NotificationDeliveryAttemptsPage(
            attempts=[NotificationDeliveryAttempt.from_message(a) for a in reply.delivery_attempts],
            next_page_token=reply.next_page_token or None,
        )


@strawberry.type
class Mutation:
    """Redelivery."""

    @strawberry.mutation(
        description=(
            "Starts a new round of attempts, per the event type's retry policy, for a "
            "delivered or failed notification."
        )
    )
    async def redeliver_notification(
        self, info: Info, input: REDELIVER_INPUT
    ) -> RedeliverNotificationPayload | None:
        """RedeliverNotification."""
        ctx = info.context
        request = pb.RedeliverNotificationRequest(
            name=f"{ctx.require_partner()}/deliveries/{input.delivery_id}"
        )
        reply = await ctx.call(
            notification_stub(info).RedeliverNotification,
            request,
            fields=INPUT_FIELDS,
            what=f"delivery {str(input.delivery_id)[:64]!r}",
        )
        return RedeliverNotificationPayload(
            delivery_id=_last_segment(reply.delivery.name),
            transaction_id=reply.delivery.transaction_id,
        )
