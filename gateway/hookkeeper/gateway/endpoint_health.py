"""Endpoint health mutations (issue 13): end a rotation's overlap early,
disable and enable a configuration, recover failed deliveries. Each is one
RPC as the authenticated partner, in the seeds' style: one ``input``
argument, a payload type, errors as for every other mutation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import strawberry
from google.protobuf import timestamp_pb2

from hookkeeper.gateway.callback_configs import (
    INPUT_FIELDS,
    NotificationCallbackConfig,
    config_name,
    describe_config,
)
from hookkeeper.gateway.context import GatewayContext
from hookkeeper.gateway.notifications import notification_stub
from hookkeeper.gateway.scalars import LocalDateTime
from hookkeeper.notifications.v1 import callback_config_pb2 as pb
from hookkeeper.notifications.v1 import notification_pb2 as nt
from hookkeeper.notifications.v1 import secret_rotation_pb2 as rotation_pb

Info = strawberry.Info[GatewayContext, None]


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(moment.astimezone(UTC))
    return message


@strawberry.input(description="Callback configuration whose previous secret to revoke.")
class RevokePreviousNotificationCallbackConfigSecretInput:
    """Input of revokePreviousNotificationCallbackConfigSecret."""

    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of the callback configuration."
    )


@strawberry.type(description="The callback configuration, signing with its current secret only.")
class RevokePreviousNotificationCallbackConfigSecretPayload:
    """Payload of revokePreviousNotificationCallbackConfigSecret."""

    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of the callback configuration whose previous secret was revoked."
    )
    secret_expiration_date_time: LocalDateTime = strawberry.field(
        description="Expiration date and time of the current secret, now the only one."
    )


@strawberry.input(description="Callback configuration to disable.")
class DisableNotificationCallbackConfigInput:
    """Input of disableNotificationCallbackConfig."""

    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of the callback configuration to disable."
    )


@strawberry.input(description="Callback configuration to enable.")
class EnableNotificationCallbackConfigInput:
    """Input of enableNotificationCallbackConfig."""

    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of the callback configuration to enable."
    )


@strawberry.type(description="The callback configuration after the change.")
class DisableNotificationCallbackConfigPayload:
    """Payload of disableNotificationCallbackConfig."""

    callback_config: NotificationCallbackConfig = strawberry.field(
        description="Details about the callback configuration."
    )


@strawberry.type(description="The callback configuration after the change.")
class EnableNotificationCallbackConfigPayload:
    """Payload of enableNotificationCallbackConfig."""

    callback_config: NotificationCallbackConfig = strawberry.field(
        description="Details about the callback configuration."
    )


@strawberry.input(description="Failed notifications to send again.")
class RecoverNotificationDeliveriesInput:
    """Input of recoverNotificationDeliveries."""

    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of the callback configuration whose failed notifications to recover."
    )
    since: LocalDateTime = strawberry.field(
        description=(
            "Notifications that failed for good (retries used up) at or after this date "
            "and time (UTC) are sent again."
        )
    )


@strawberry.type(description="How many failed notifications were queued again.")
class RecoverNotificationDeliveriesPayload:
    """Payload of recoverNotificationDeliveries."""

    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of the callback configuration."
    )
    recovered_count: int = strawberry.field(
        description="How many notifications were queued again, each with a fresh retry schedule."
    )


REVOKE_INPUT = Annotated[
    RevokePreviousNotificationCallbackConfigSecretInput,
    strawberry.argument(description="Callback configuration whose previous secret to revoke."),
]
DISABLE_INPUT = Annotated[
    DisableNotificationCallbackConfigInput,
    strawberry.argument(description="Callback configuration to disable."),
]
ENABLE_INPUT = Annotated[
    EnableNotificationCallbackConfigInput,
    strawberry.argument(description="Callback configuration to enable."),
]
RECOVER_INPUT = Annotated[
    RecoverNotificationDeliveriesInput,
    strawberry.argument(description="Failed notifications to send again."),
]


@strawberry.type
class Mutation:
    """Endpoint health mutations; payloads are nullable like the others'."""

    @strawberry.mutation(
        description=(
            "Ends a secret rotation's overlap early: the previous secret, kept active by "
            "keepExistingSecretActive, stops signing at once (for a leaked secret). Fails "
            "when no previous secret is active."
        )
    )
    async def revoke_previous_notification_callback_config_secret(
        self, info: Info, input: REVOKE_INPUT
    ) -> RevokePreviousNotificationCallbackConfigSecretPayload | None:
        """RevokePreviousSecret of the partner's configuration."""
        ctx = info.context
        reply = await ctx.call(
            ctx.stubs.secret_rotation.RevokePreviousSecret,
            rotation_pb.RevokePreviousSecretRequest(
                name=config_name(ctx.require_partner(), input.callback_config_id)
            ),
            fields=INPUT_FIELDS,
            what=describe_config(input.callback_config_id),
        )
        return RevokePreviousNotificationCallbackConfigSecretPayload(
            callback_config_id=strawberry.ID(reply.name.rsplit("/", 1)[-1]),
            secret_expiration_date_time=LocalDateTime(
                reply.secret_expire_time.ToDatetime(tzinfo=UTC)
            ),
        )

    @strawberry.mutation(
        description=(
            "Disables a callback configuration: no notifications are sent to it; those "
            "queued, and those of events published meanwhile, wait, paused, and show in "
            "the delivery log. The contact e-mail address is told once."
        )
    )
    async def disable_notification_callback_config(
        self, info: Info, input: DISABLE_INPUT
    ) -> DisableNotificationCallbackConfigPayload | None:
        """DisableCallbackConfig of the partner's configuration."""
        ctx = info.context
        reply = await ctx.call(
            ctx.stubs.callback_configs.DisableCallbackConfig,
            pb.DisableCallbackConfigRequest(
                name=config_name(ctx.require_partner(), input.callback_config_id)
            ),
            fields=INPUT_FIELDS,
            what=describe_config(input.callback_config_id),
        )
        return DisableNotificationCallbackConfigPayload(
            callback_config=NotificationCallbackConfig.from_message(reply.callback_config)
        )

    @strawberry.mutation(
        description=(
            "Enables a disabled callback configuration: its paused notifications are sent "
            "in the order they were published, each with a fresh retry schedule."
        )
    )
    async def enable_notification_callback_config(
        self, info: Info, input: ENABLE_INPUT
    ) -> EnableNotificationCallbackConfigPayload | None:
        """EnableCallbackConfig of the partner's configuration."""
        ctx = info.context
        reply = await ctx.call(
            ctx.stubs.callback_configs.EnableCallbackConfig,
            pb.EnableCallbackConfigRequest(
                name=config_name(ctx.require_partner(), input.callback_config_id)
            ),
            fields=INPUT_FIELDS,
            what=describe_config(input.callback_config_id),
        )
        return EnableNotificationCallbackConfigPayload(
            callback_config=NotificationCallbackConfig.from_message(reply.callback_config)
        )

    @strawberry.mutation(
        description=(
            "Sends again every notification to a callback configuration that failed for "
            "good (retries used up) at or after a date and time, in publish order, signed "
            "with the secrets active when they are sent."
        )
    )
    async def recover_notification_deliveries(
        self, info: Info, input: RECOVER_INPUT
    ) -> RecoverNotificationDeliveriesPayload | None:
        """RecoverDeliveries of the partner's configuration."""
        ctx = info.context
        reply = await ctx.call(
            notification_stub(info).RecoverDeliveries,
            nt.RecoverDeliveriesRequest(
                name=config_name(ctx.require_partner(), input.callback_config_id),
                since=_timestamp(input.since),
            ),
            fields=INPUT_FIELDS,
            what=describe_config(input.callback_config_id),
        )
        return RecoverNotificationDeliveriesPayload(
            callback_config_id=input.callback_config_id, recovered_count=reply.recovered_count
        )
