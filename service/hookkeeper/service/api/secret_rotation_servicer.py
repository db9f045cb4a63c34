"""gRPC transport of SecretRotationService."""

from __future__ import annotations

from typing import Any

import grpc

from hookkeeper.notifications.v1 import secret_rotation_pb2 as pb
from hookkeeper.notifications.v1 import secret_rotation_pb2_grpc as pb_grpc
from hookkeeper.service.api.convert import from_timestamp, timestamp
from hookkeeper.service.app.secret_rotation import SecretRotation
from hookkeeper.service.domain.names import parse_config

Context = grpc.aio.ServicerContext[Any, Any]


class SecretRotationServicer(pb_grpc.SecretRotationServiceServicer):
    """Serves SecretRotationService over the SecretRotation use cases."""

    def __init__(self, rotation: SecretRotation) -> None:
        self._rotation = rotation

    async def RefreshSecret(
        self, request: pb.RefreshSecretRequest, context: Context
    ) -> pb.RefreshSecretResponse:
        """Issues a new secret, optionally keeping the old one for the overlap."""
        refreshed = await self._rotation.refresh(
            parse_config(request.name), keep_existing=request.keep_existing_secret_active
        )
        return pb.RefreshSecretResponse(
            name=str(refreshed.name),
            secret=refreshed.secret,
            secret_expire_time=timestamp(refreshed.secret_expire_time),
            previous_secret_expire_time=timestamp(refreshed.previous_secret_expire_time),
        )

    async def SignNotification(
        self, request: pb.SignNotificationRequest, context: Context
    ) -> pb.SignNotificationResponse:
        """Signs a payload with every active secret of the configuration."""
        at = from_timestamp(request.timestamp) if request.HasField("timestamp") else None
        signature = await self._rotation.sign(
            parse_config(request.name), request.payload, at, request.webhook_id
        )
        return pb.SignNotificationResponse(
            timestamp=signature.timestamp, signature=signature.header
        )

    async def RevokePreviousSecret(
        self, request: pb.RevokePreviousSecretRequest, context: Context
    ) -> pb.RevokePreviousSecretResponse:
        """Ends the overlap: the previous secret stops signing at once."""
        revoked = await self._rotation.revoke_previous(parse_config(request.name))
        return pb.RevokePreviousSecretResponse(
            name=str(revoked.name), secret_expire_time=timestamp(revoked.secret_expire_time)
        )
