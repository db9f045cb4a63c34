"""The ``notificationProfile`` query: the partner's notification profile.

The profile type itself is merged from every capability's ``ProfileFields``
(see ``gateway.schema``), so this module only knows what a profile *is*: the
authenticated partner, handed to each field resolver as its parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import strawberry

from hookkeeper.gateway.context import GatewayContext

PROFILE_DESCRIPTION = (
    "The partner's notification profile: its callback configurations and the "
    "event types they are subscribed to. Every field lists only the "
    "authenticated partner's own data."
)


@dataclass(frozen=True)
class ProfileRoot:
    """The parent value of every ``NotificationProfile`` field resolver."""

    # `partners/{partner}` of the authenticated partner.
    partner: str


def _notification_profile(info: strawberry.Info[GatewayContext, None]) -> ProfileRoot:
    return ProfileRoot(partner=info.context.require_partner())


def query_type(profile_type: type) -> type:
    """The ``Query`` part holding ``notificationProfile: NotificationProfile!``.

    Built once the merged profile type exists, hence a function.
    """

    @strawberry.type
    class ProfileQuery:
        notification_profile: Any = strawberry.field(
            resolver=_notification_profile,
            graphql_type=profile_type,
            description=(
                "The authenticated partner's notification profile (its callback "
                "configurations and subscriptions). A partner that never created a "
                "configuration has an empty profile."
            ),
        )

    return ProfileQuery
