"""Callback configuration operations: create, update, delete, refresh the
secret, and the profile's ``callbackConfigs`` list.

Descriptions are the public documentation's sentences (the seeds), so
GraphiQL's docs read like the reference partners already know.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, TypeVar

import strawberry
from google.protobuf import field_mask_pb2, timestamp_pb2

from hookkeeper.gateway.context import GatewayContext
from hookkeeper.gateway.errors import BAD_USER_INPUT, api_error
from hookkeeper.gateway.profile import ProfileRoot
from hookkeeper.gateway.scalars import EmailAddress, LocalDateTime, Url
from hookkeeper.notifications.v1 import callback_config_pb2 as pb
from hookkeeper.notifications.v1 import secret_rotation_pb2 as rotation_pb

Info = strawberry.Info[GatewayContext, None]
T = TypeVar("T")


def _redacted_repr(*hidden: str) -> Callable[[object], str]:
    """A ``__repr__`` that shows ``<redacted>`` for the fields named: API keys
    and secrets never reach a log or a traceback through a repr."""

    def redacted(self: object) -> str:
        shown = ", ".join(
            f"{name}={'<redacted>' if name in hidden else repr(value)}"
            for name, value in vars(self).items()
        )
        return f"{type(self).__name__}({shown})"

    return redacted


# Proto field (last path segment) of a violation → GraphQL input path.
INPUT_FIELDS = {
    "callback_url": "input.callbackUrl",
    "api_key": "input.apiKey",
    "contact_email": "input.contactEmail",
    "request_timeout_seconds": "input.requestTimeoutSeconds",
    "name": "input.callbackConfigId",
    "keep_existing_secret_active": "input.keepExistingSecretActive",
    "signature_scheme": "input.signatureScheme",
    "max_deliveries_per_second": "input.maxDeliveriesPerSecond",
    "since": "input.since",
}
SECRET_DESCRIPTION = (
    "String (24 characters in length) used to validate the signature of payloads "
    "when you receive notifications from the webhooks service."
)
LIST_PAGE_SIZE = 1000


def _moment(message: timestamp_pb2.Timestamp) -> datetime:
    return message.ToDatetime(tzinfo=UTC)


def config_name(partner: str, config_id: strawberry.ID) -> str:
    """The resource name of the partner's configuration ``config_id``."""
    return f"{partner}/callbackConfigs/{config_id}"


def describe_config(config_id: strawberry.ID) -> str:
    """How NOT_FOUND names a configuration (the id cut short: it is the
    partner's own input, echoed back)."""
    return f"callback configuration {str(config_id)[:64]!r}"


@strawberry.enum(description="How notifications to a callback configuration are signed.")
class NotificationSignatureScheme(Enum):
    """The configuration's signature scheme (immutable after create)."""

    EXPEDIA_V2 = strawberry.enum_value(
        "EXPEDIA_V2",
        description=(
            "The x-eg-notification-signature-v2 and x-eg-notification-timestamp headers "
            "(the default), with 24-character secrets."
        ),
    )
    STANDARD_WEBHOOKS = strawberry.enum_value(
        "STANDARD_WEBHOOKS",
        description=(
            "Standard Webhooks (standardwebhooks.com): webhook-id, webhook-timestamp and "
            "webhook-signature headers, with whsec_ secrets."
        ),
    )


@strawberry.enum(description="Whether notifications are sent to a callback configuration.")
class NotificationCallbackConfigState(Enum):
    """The configuration's state."""

    ACTIVE = strawberry.enum_value("ACTIVE", description="Notifications are sent.")
    DISABLED = strawberry.enum_value(
        "DISABLED",
        description=(
            "No notifications are sent: they wait, paused, until the configuration is "
            "enabled with enableNotificationCallbackConfig."
        ),
    )


SCHEMES = {
    pb.SIGNATURE_SCHEME_EXPEDIA_V2: NotificationSignatureScheme.EXPEDIA_V2,
    pb.SIGNATURE_SCHEME_STANDARD_WEBHOOKS: NotificationSignatureScheme.STANDARD_WEBHOOKS,
}
SCHEME_NUMBERS = {scheme: number for number, scheme in SCHEMES.items()}
RATE_DESCRIPTION = (
    "Most notifications sent to the callback URL per second, 1-10000; null means no limit."
)


@strawberry.type(description="Details about the callback configuration.")
class NotificationCallbackConfig:
    """A configuration as partners see it: the name's last segment is its id."""

    id: strawberry.ID = strawberry.field(description="ID of the callback configuration.")
    callback_url: Url = strawberry.field(
        description="Callback URL (REST endpoint) where real-time events are sent."
    )
    contact_email: EmailAddress | None = strawberry.field(
        description=(
            "Email address where a notification is sent when the callback "
            "configuration's secret is about to expire. The email notification is "
            "sent 30 days, 7 days, and 1 days prior to expiration."
        )
    )
    request_timeout_seconds: int = strawberry.field(
        description=(
            "Amount of time (in seconds) we wait for the partner to respond when a "
            "notification is sent to them. If a response is not received within "
            "request timeout time, the notification is retried according to the "
            "retry policy."
        )
    )
    secret_expiration_date_time: LocalDateTime = strawberry.field(
        description="Expiration date and time for the secret."
    )
    state: NotificationCallbackConfigState = strawberry.field(
        description=(
            "Whether notifications are sent. A configuration is disabled by "
            "disableNotificationCallbackConfig, at once when its callback URL answers "
            "HTTP 410 Gone, or after every delivery attempt failed for several days."
        )
    )
    disable_reason: str | None = strawberry.field(
        description="Why the configuration is disabled; null while it is active."
    )
    disable_time: LocalDateTime | None = strawberry.field(
        description="When the configuration was disabled; null while it is active."
    )
    signature_scheme: NotificationSignatureScheme = strawberry.field(
        description="How notifications are signed (set at creation, immutable)."
    )
    max_deliveries_per_second: int | None = strawberry.field(description=RATE_DESCRIPTION)

    @classmethod
    def from_message(cls, message: pb.CallbackConfig) -> NotificationCallbackConfig:
        """The public view of a service configuration."""
        disabled = message.state == pb.CallbackConfig.STATE_DISABLED
        return cls(
            id=strawberry.ID(message.name.rsplit("/", 1)[-1]),
            callback_url=Url(message.callback_url),
            contact_email=EmailAddress(message.contact_email) if message.contact_email else None,
            request_timeout_seconds=message.request_timeout_seconds,
            secret_expiration_date_time=LocalDateTime(_moment(message.secret_expire_time)),
            state=(
                NotificationCallbackConfigState.DISABLED
                if disabled
                else NotificationCallbackConfigState.ACTIVE
            ),
            disable_reason=message.disable_reason or None,
            disable_time=(
                LocalDateTime(_moment(message.disable_time))
                if message.HasField("disable_time")
                else None
            ),
            signature_scheme=SCHEMES.get(
                message.signature_scheme, NotificationSignatureScheme.EXPEDIA_V2
            ),
            max_deliveries_per_second=(
                message.max_deliveries_per_second
                if message.HasField("max_deliveries_per_second")
                else None
            ),
        )


@strawberry.input(description="Details about the callback configuration.")
class CreateNotificationCallbackConfigInput:
    """Input of createNotificationCallbackConfig (seed 003)."""

    __repr__ = _redacted_repr("api_key")

    callback_url: Url = strawberry.field(
        description="Callback URL (REST endpoint) where real-time events are sent."
    )
    api_key: str = strawberry.field(
        description=(
            "Key used to authenticate requests. The key is a UTF-8 encoded string (no size limit)."
        )
    )
    contact_email: EmailAddress = strawberry.field(
        description=(
            "Email address where a notification is sent when the callback "
            "configuration's secret is about to expire. We recommend specifying an "
            "email distribution list instead of an individual's address because "
            "addresses can become obsolete, increasing the risk of expiry secrets not "
            "being reset in time. The email notification is sent 30 days, 7 days, and "
            "1 days prior to expiration."
        )
    )
    request_timeout_seconds: int | None = strawberry.field(
        default=60,
        description=(
            "Amount of time (in seconds) we wait for the partner to respond when a "
            "notification is sent to them. If a response is not received within "
            "request timeout time, the notification is retried according to the "
            "retry policy. Specify values between 1-60; default value is 60."
        ),
    )
    signature_scheme: NotificationSignatureScheme | None = strawberry.field(
        default=None,
        description=(
            "How notifications are signed: EXPEDIA_V2 (the default) or STANDARD_WEBHOOKS "
            "(the secret is then whsec_ + Base64). Cannot be changed later."
        ),
    )
    max_deliveries_per_second: int | None = strawberry.field(
        default=None, description=RATE_DESCRIPTION
    )


@strawberry.type(description="Details about the callback configuration returned by the mutation.")
class CreateNotificationCallbackConfigPayload:
    """Payload of createNotificationCallbackConfig (seed 003)."""

    __repr__ = _redacted_repr("secret")

    callback_config: NotificationCallbackConfig = strawberry.field(
        description="Details about the callback configuration."
    )
    secret: str = strawberry.field(
        description=(
            f"{SECRET_DESCRIPTION} By default, the secret is valid for one year (no "
            "notification is sent when the secret expires; you can determine when it "
            "will expire using the secretExpirationDateTime field)."
        )
    )


@strawberry.input(description="Callback configuration to update.")
class RefreshNotificationCallbackConfigSecretInput:
    """Input of refreshNotificationCallbackConfigSecret (seed 000)."""

    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of callback configuration to update."
    )
    keep_existing_secret_active: bool = strawberry.field(
        default=False,
        description=(
            "Whether to persist the existing secret (default value: false). When set "
            "to true, the existing secret is used for three days or until the "
            "secret's expiry time, whichever comes first. When set to false, the new "
            "secret is used immediately. The mutation request will fail if "
            "keepExistingSecretActive is set to true for an expired secret."
        ),
    )


@strawberry.type(description="Details to use when updating the callback configuration's secret.")
class RefreshNotificationCallbackConfigSecretPayload:
    """Payload of refreshNotificationCallbackConfigSecret (seed 000)."""

    __repr__ = _redacted_repr("secret")

    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of callback configuration whose secret is updated."
    )
    secret: str = strawberry.field(description=SECRET_DESCRIPTION)
    secret_expiration_date_time: LocalDateTime = strawberry.field(
        description="Expiration date and time of the new secret."
    )
    previous_secret_expiration_date_time: LocalDateTime | None = strawberry.field(
        description="Expiration date and time of the existing secret."
    )


@strawberry.input(
    description=(
        "Changes to a callback configuration: only the fields given (not null) "
        "change. The secret is not changed by an update."
    )
)
class UpdateNotificationCallbackConfigInput:
    """Input of updateNotificationCallbackConfig."""

    __repr__ = _redacted_repr("api_key")

    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of callback configuration to update."
    )
    callback_url: Url | None = strawberry.field(
        default=strawberry.UNSET,
        description="New callback URL (REST endpoint) where real-time events are sent.",
    )
    api_key: str | None = strawberry.field(
        default=strawberry.UNSET, description="New key used to authenticate requests."
    )
    contact_email: EmailAddress | None = strawberry.field(
        default=strawberry.UNSET,
        description="New email address where secret expiry warnings are sent.",
    )
    request_timeout_seconds: int | None = strawberry.field(
        default=strawberry.UNSET,
        description="New request timeout in seconds, between 1-60.",
    )
    max_deliveries_per_second: int | None = strawberry.field(
        default=strawberry.UNSET,
        description=(
            "New most notifications per second, 1-10000; an explicit null removes the "
            "limit, omitting the field keeps it."
        ),
    )


@strawberry.type(description="The callback configuration after the update.")
class UpdateNotificationCallbackConfigPayload:
    """Payload of updateNotificationCallbackConfig."""

    callback_config: NotificationCallbackConfig = strawberry.field(
        description="Details about the callback configuration."
    )


@strawberry.input(description="Callback configuration to delete.")
class DeleteNotificationCallbackConfigInput:
    """Input of deleteNotificationCallbackConfig."""

    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of callback configuration to delete."
    )


@strawberry.type(description="The deleted callback configuration.")
class DeleteNotificationCallbackConfigPayload:
    """Payload of deleteNotificationCallbackConfig."""

    callback_config_id: strawberry.ID = strawberry.field(
        description="ID of the callback configuration that was deleted."
    )


def _given(value: T | None) -> T | None:
    # Omitted (UNSET) and explicit null both mean "keep the current value".
    return None if value is strawberry.UNSET else value


def _update_request(
    partner: str, given: UpdateNotificationCallbackConfigInput
) -> pb.UpdateCallbackConfigRequest:
    config = pb.CallbackConfig(name=config_name(partner, given.callback_config_id))
    paths: list[str] = []
    # The input's attribute names are the proto's field names (and mask paths).
    for path in ("callback_url", "api_key", "contact_email", "request_timeout_seconds"):
        value = _given(getattr(given, path))
        if value is not None:
            setattr(config, path, value)
            paths.append(path)
    # Here null means "no limit" (omitted keeps it): the mask names the field
    # and the message leaves it unset.
    if given.max_deliveries_per_second is not strawberry.UNSET:
        if given.max_deliveries_per_second is not None:
            config.max_deliveries_per_second = given.max_deliveries_per_second
        paths.append("max_deliveries_per_second")
    if not paths:
        raise api_error(
            BAD_USER_INPUT,
            "input: give at least one of callbackUrl, apiKey, contactEmail, "
            "requestTimeoutSeconds, maxDeliveriesPerSecond",
            field="input",
        )
    return pb.UpdateCallbackConfigRequest(
        callback_config=config, update_mask=field_mask_pb2.FieldMask(paths=paths)
    )


CREATE_INPUT = Annotated[
    CreateNotificationCallbackConfigInput,
    strawberry.argument(description="Details used when creating the callback configuration."),
]
REFRESH_INPUT = Annotated[
    RefreshNotificationCallbackConfigSecretInput,
    strawberry.argument(description="Callback configuration to update."),
]
UPDATE_INPUT = Annotated[
    UpdateNotificationCallbackConfigInput,
    strawberry.argument(description="Callback configuration to update."),
]
DELETE_INPUT = Annotated[
    DeleteNotificationCallbackConfigInput,
    strawberry.argument(description="Callback configuration to delete."),
]


@strawberry.type
class Mutation:
    """Callback configuration mutations, each one RPC as the authenticated partner.

    Payloads are nullable so that one failed mutation of a request nulls only
    its own field: a sibling that succeeded still returns its one-time secret.
    """

    @strawberry.mutation(
        description=(
            "Creates the callback configuration for the lodging partner account, "
            "including the callback URL (where notification events are sent when they "
            "occur), API key, partner email address (where secret expiry warnings are "
            "sent), and request timeout value. If the partner's notification profile "
            "does not exist, this mutation will create the profile, too."
        )
    )
    async def create_notification_callback_config(
        self, info: Info, input: CREATE_INPUT
    ) -> CreateNotificationCallbackConfigPayload | None:
        """CreateCallbackConfig under the partner."""
        ctx = info.context
        config = pb.CallbackConfig(
            callback_url=input.callback_url,
            api_key=input.api_key,
            contact_email=input.contact_email,
        )
        if input.request_timeout_seconds is not None:
            config.request_timeout_seconds = input.request_timeout_seconds
        if input.signature_scheme is not None:
            config.signature_scheme = SCHEME_NUMBERS[input.signature_scheme]
        if input.max_deliveries_per_second is not None:
            config.max_deliveries_per_second = input.max_deliveries_per_second
        request = pb.CreateCallbackConfigRequest(
            parent=ctx.require_partner(), callback_config=config
        )
        reply = await ctx.call(
            ctx.stubs.callback_configs.CreateCallbackConfig, request, fields=INPUT_FIELDS
        )
        return CreateNotificationCallbackConfigPayload(
            callback_config=NotificationCallbackConfig.from_message(reply.callback_config),
            secret=reply.secret,
        )

    @strawberry.mutation(
        description=(
            "Refreshes the secret of the API key used by the callback configuration. "
            "By default, a secret is valid for one year. If the secret's expiry date "
            "is at least three days in the future, you can specify when the new secret "
            "is used by specifying the keepExistingSecretActive input parameter."
        )
    )
    async def refresh_notification_callback_config_secret(
        self, info: Info, input: REFRESH_INPUT
    ) -> RefreshNotificationCallbackConfigSecretPayload | None:
        """RefreshSecret of the partner's configuration."""
        ctx = info.context
        request = rotation_pb.RefreshSecretRequest(
            name=config_name(ctx.require_partner(), input.callback_config_id),
            keep_existing_secret_active=input.keep_existing_secret_active,
        )
        reply = await ctx.call(
            ctx.stubs.secret_rotation.RefreshSecret,
            request,
            fields=INPUT_FIELDS,
            what=describe_config(input.callback_config_id),
        )
        previous = (
            LocalDateTime(_moment(reply.previous_secret_expire_time))
            if reply.HasField("previous_secret_expire_time")
            else None
        )
        return RefreshNotificationCallbackConfigSecretPayload(
            callback_config_id=strawberry.ID(reply.name.rsplit("/", 1)[-1]),
            secret=reply.secret,
            secret_expiration_date_time=LocalDateTime(_moment(reply.secret_expire_time)),
            previous_secret_expiration_date_time=previous,
        )

    @strawberry.mutation(
        description=(
            "Updates the callback URL, API key, contact email address or request "
            "timeout of a callback configuration. Fields not given keep their values; "
            "the secret is not changed."
        )
    )
    async def update_notification_callback_config(
        self, info: Info, input: UPDATE_INPUT
    ) -> UpdateNotificationCallbackConfigPayload | None:
        """UpdateCallbackConfig with a mask of the fields given."""
        ctx = info.context
        request = _update_request(ctx.require_partner(), input)
        reply = await ctx.call(
            ctx.stubs.callback_configs.UpdateCallbackConfig,
            request,
            fields=INPUT_FIELDS,
            what=describe_config(input.callback_config_id),
        )
        return UpdateNotificationCallbackConfigPayload(
            callback_config=NotificationCallbackConfig.from_message(reply.callback_config)
        )

    @strawberry.mutation(
        description=(
            "Deletes a callback configuration and its secrets. Notifications are no "
            "longer sent to its callback URL."
        )
    )
    async def delete_notification_callback_config(
        self, info: Info, input: DELETE_INPUT
    ) -> DeleteNotificationCallbackConfigPayload | None:
        """DeleteCallbackConfig of the partner's configuration."""
        ctx = info.context
        request = pb.DeleteCallbackConfigRequest(
            name=config_name(ctx.require_partner(), input.callback_config_id)
        )
        reply = await ctx.call(
            ctx.stubs.callback_configs.DeleteCallbackConfig,
            request,
            fields=INPUT_FIELDS,
            what=describe_config(input.callback_config_id),
        )
        return DeleteNotificationCallbackConfigPayload(
            callback_config_id=strawberry.ID(reply.name.rsplit("/", 1)[-1])
        )


@strawberry.type
class ProfileFields:
    """The profile's configurations."""

    @strawberry.field(description="The partner's callback configurations, oldest first.")
    async def callback_configs(
        self, root: strawberry.Parent[ProfileRoot], info: Info
    ) -> list[NotificationCallbackConfig]:
        """Every page of ListCallbackConfigs."""
        ctx = info.context
        configs: list[NotificationCallbackConfig] = []
        token = ""
        while True:
            request = pb.ListCallbackConfigsRequest(
                parent=root.partner, page_size=LIST_PAGE_SIZE, page_token=token
            )
            reply = await ctx.call(ctx.stubs.callback_configs.ListCallbackConfigs, request)
            configs += [NotificationCallbackConfig.from_message(c) for c in reply.callback_configs]
            token = reply.next_page_token
            if not token:
                return configs
