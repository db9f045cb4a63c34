"""Notification delivery operations: the event-type catalogue, subscribing,
unsubscribing and moving event types, test sends, and the profile's
``subscriptions``. Each is one NotificationService RPC as the partner.

The public reference names these operations but not their input and payload
shapes; ours are written down in docs/delivery.md.
"""

from __future__ import annotations

from typing import Annotated

import strawberry
from google.protobuf import field_mask_pb2

from hookkeeper.gateway.callback_configs import config_name, describe_config
from hookkeeper.gateway.context import GatewayContext
from hookkeeper.gateway.errors import BAD_USER_INPUT, api_error
from hookkeeper.gateway.profile import ProfileRoot
from hookkeeper.notifications.v1 import notification_pb2 as pb
from hookkeeper.notifications.v1 import notification_pb2_grpc as pb_grpc

Info = strawberry.Info[GatewayContext, None]

INPUT_FIELDS = {
    "event_type": "input.eventType",
    "callback_config": "input.callbackConfigId",
    "name": "input.callbackConfigId",
    "payload_json": "input.payload",
}


def notification_stub(info: Info) -> pb_grpc.NotificationServiceStub:
    """The NotificationService stub of this request's channel."""
    return info.context.stubs.stub(pb_grpc.NotificationServiceStub)


@strawberry.type(description="An event type available for subscription.")
class NotificationEventType:
    """One entry of the catalogue."""

    name: str = strawberry.field(description="Name of the event type, e.g. GuestReviewSubmitted.")
    description: str = strawberry.field(description="When notifications of this type are sent.")
    retry_interval_seconds: int = strawberry.field(
        description="Seconds between two attempts when a notification fails."
    )
    max_retries: int = strawberry.field(
        description="Retries after the first attempt before the notification fails for good."
    )
    mandatory: bool = strawberry.field(description="Whether subscribing to it is mandatory.")

    @classmethod
    def from_message(cls, message: pb.EventType) -> NotificationEventType:
        """The public view of a catalogue entry."""
        return cls(
            name=message.event_type,
            description=message.description,
            retry_interval_seconds=int(message.retry_policy.interval.ToTimedelta().total_seconds()),
            max_retries=message.retry_policy.max_retries,
            mandatory=message.mandatory,
        )


@strawberry.type(description="An event type subscribed to one of the partner's configurations.")
class NotificationEventTypeSubscription:
    """A subscription as partners see it."""

    event_type: str = strawberry.field(description="Name of the subscribed event type.")
    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of the callback configuration that receives the notifications."
    )

    @classmethod
    def from_message(cls, message: pb.Subscription) -> NotificationEventTypeSubscription:
        """The public view of a subscription."""
        return cls(
            event_type=message.event_type,
            callback_config_id=strawberry.ID(message.callback_config.rsplit("/", 1)[-1]),
        )


@strawberry.input(description="Event type to subscribe, and the configuration to send it to.")
class SubscribeNotificationEventTypeInput:
    """Input of subscribeNotificationEventType."""

    event_type: str = strawberry.field(description="Name of the event type to subscribe.")
    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of the callback configuration that receives the notifications."
    )


@strawberry.input(description="Event type to unsubscribe.")
class UnsubscribeNotificationEventTypeInput:
    """Input of unsubscribeNotificationEventType."""

    event_type: str = strawberry.field(description="Name of the event type to unsubscribe.")


@strawberry.input(description="Subscribed event type and the configuration to move it to.")
class UpdateNotificationEventTypeSubscriptionInput:
    """Input of updateNotificationEventTypeSubscription."""

    event_type: str = strawberry.field(description="Name of the subscribed event type.")
    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of the callback configuration to send the event type to from now on."
    )


@strawberry.input(description="Test notification to send.")
class SendTestNotificationInput:
    """Input of sendTestNotification."""

    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of the callback configuration to send the test notification to."
    )
    event_type: str = strawberry.field(description="Name of the event type of the notification.")
    payload: str = strawberry.field(
        description="The notification's payload: a JSON object, as a string (up to 256 KiB)."
    )


@strawberry.type(description="The subscription created or moved.")
class NotificationEventTypeSubscriptionPayload:
    """Payload of subscribe and update."""

    subscription: NotificationEventTypeSubscription = strawberry.field(
        description="The subscription."
    )


@strawberry.type(description="The event type that was unsubscribed.")
class UnsubscribeNotificationEventTypePayload:
    """Payload of unsubscribeNotificationEventType."""

    event_type: str = strawberry.field(description="Name of the unsubscribed event type.")


@strawberry.type(description="Outcome of a test notification, reported when it completes.")
class SendTestNotificationPayload:
    """Payload of sendTestNotification."""

    delivered: bool = strawberry.field(description="Whether the callback URL answered 2xx.")
    http_status: int | None = strawberry.field(
        description="HTTP status answered; null when no answer came."
    )
    latency_milliseconds: int = strawberry.field(
        description="Milliseconds from sending the request to the answer or the failure."
    )
    error: str | None = strawberry.field(description="Why the send failed; null when delivered.")
    transaction_id: str = strawberry.field(description="The transactionId header sent.")


SUBSCRIBE_INPUT = Annotated[
    SubscribeNotificationEventTypeInput, strawberry.argument(description="Subscription to create.")
]
UNSUBSCRIBE_INPUT = Annotated[
    UnsubscribeNotificationEventTypeInput,
    strawberry.argument(description="Subscription to remove."),
]
UPDATE_INPUT = Annotated[
    UpdateNotificationEventTypeSubscriptionInput,
    strawberry.argument(description="Subscription to move."),
]
TEST_INPUT = Annotated[
    SendTestNotificationInput, strawberry.argument(description="Test notification to send.")
]


def _subscription_name(partner: str, event_type: str) -> str:
    if not event_type or "/" in event_type:
        raise api_error(
            BAD_USER_INPUT,
            "input.eventType: unknown event type; see notificationEventTypes",
            field="input.eventType",
        )
    return f"{partner}/subscriptions/{event_type}"


@strawberry.type
class Query:
    """The event-type catalogue."""

    @strawberry.field(description="The event types available for subscription.")
    async def notification_event_types(self, info: Info) -> list[NotificationEventType]:
        """ListEventTypes."""
        info.context.require_partner()
        reply = await info.context.call(
            notification_stub(info).ListEventTypes, pb.ListEventTypesRequest()
        )
        return [NotificationEventType.from_message(t) for t in reply.event_types]


@strawberry.type
class Mutation:
    """Subscription mutations and test sends, one RPC each as the partner."""

    @strawberry.mutation(description="Subscribes a callback configuration to an event type.")
    async def subscribe_notification_event_type(
        self, info: Info, input: SUBSCRIBE_INPUT
    ) -> NotificationEventTypeSubscriptionPayload | None:
        """CreateSubscription; subscribing again to the same configuration
        returns the existing subscription (idempotent)."""
        ctx = info.context
        partner = ctx.require_partner()
        config = config_name(partner, input.callback_config_id)
        existing = await ctx.call(
            notification_stub(info).ListSubscriptions, pb.ListSubscriptionsRequest(parent=partner)
        )
        for found in existing.subscriptions:
            if found.event_type == input.event_type:
                if found.callback_config != config:
                    raise api_error(
                        BAD_USER_INPUT,
                        "input.eventType: already subscribed to another callback "
                        "configuration; use updateNotificationEventTypeSubscription",
                        field="input.eventType",
                    )
                return NotificationEventTypeSubscriptionPayload(
                    subscription=NotificationEventTypeSubscription.from_message(found)
                )
        request = pb.CreateSubscriptionRequest(
            parent=partner,
            subscription=pb.Subscription(event_type=input.event_type, callback_config=config),
        )
        reply = await ctx.call(
            notification_stub(info).CreateSubscription,
            request,
            fields=INPUT_FIELDS,
            what=describe_config(input.callback_config_id),
        )
        return NotificationEventTypeSubscriptionPayload(
            subscription=NotificationEventTypeSubscription.from_message(reply.subscription)
        )

    @strawberry.mutation(description="Removes a subscription.")
    async def unsubscribe_notification_event_type(
        self, info: Info, input: UNSUBSCRIBE_INPUT
    ) -> UnsubscribeNotificationEventTypePayload | None:
        """DeleteSubscription."""
        ctx = info.context
        name = _subscription_name(ctx.require_partner(), input.event_type)
        await ctx.call(
            notification_stub(info).DeleteSubscription,
            pb.DeleteSubscriptionRequest(name=name),
            fields=INPUT_FIELDS,
            what=f"subscription of {input.event_type[:64]!r}",
        )
        return UnsubscribeNotificationEventTypePayload(event_type=input.event_type)

    @strawberry.mutation(description="Moves a subscribed event type to another configuration.")
    async def update_notification_event_type_subscription(
        self, info: Info, input: UPDATE_INPUT
    ) -> NotificationEventTypeSubscriptionPayload | None:
        """UpdateSubscription of callback_config."""
        ctx = info.context
        partner = ctx.require_partner()
        request = pb.UpdateSubscriptionRequest(
            subscription=pb.Subscription(
                name=_subscription_name(partner, input.event_type),
                callback_config=config_name(partner, input.callback_config_id),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["callback_config"]),
        )
        reply = await ctx.call(
            notification_stub(info).UpdateSubscription,
            request,
            fields=INPUT_FIELDS,
            what=(
                f"subscription of {input.event_type[:64]!r} or "
                f"{describe_config(input.callback_config_id)}"
            ),
        )
        return NotificationEventTypeSubscriptionPayload(
            subscription=NotificationEventTypeSubscription.from_message(reply.subscription)
        )

    @strawberry.mutation(
        description=(
            "Sends a test notification of a given event type and payload to a callback "
            "configuration now, and reports the outcome."
        )
    )
    async def send_test_notification(
        self, info: Info, input: TEST_INPUT
    ) -> SendTestNotificationPayload | None:
        """SendTestNotification."""
        ctx = info.context
        request = pb.SendTestNotificationRequest(
            name=config_name(ctx.require_partner(), input.callback_config_id),
            event_type=input.event_type,
            payload_json=input.payload,
        )
        reply = await ctx.call(
            notification_stub(info).SendTestNotification,
            request,
            fields=INPUT_FIELDS,
            what=describe_config(input.callback_config_id),
        )
        return SendTestNotificationPayload(
            delivered=reply.delivered,
            http_status=reply.http_status or None,
            latency_milliseconds=int(reply.latency.ToTimedelta().total_seconds() * 1000),
            error=reply.error or None,
            transaction_id=reply.attempt.transaction_id,
        )


@strawberry.type
class ProfileFields:
    """The profile's subscriptions."""

    @strawberry.field(description="The event types the partner subscribed, by event type.")
    async def subscriptions(
        self, root: strawberry.Parent[ProfileRoot], info: Info
    ) -> list[NotificationEventTypeSubscription]:
        """ListSubscriptions (one page holds them all: one per event type)."""
        reply = await info.context.call(
            notification_stub(info).ListSubscriptions,
            pb.ListSubscriptionsRequest(parent=root.partner),
        )
        return [NotificationEventTypeSubscription.from_message(s) for s in reply.subscriptions]
