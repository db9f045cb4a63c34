"""gRPC transport of CallbackConfigService."""

from __future__ import annotations

from typing import Any

import grpc

from hookkeeper.notifications.v1 import callback_config_pb2 as pb
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as pb_grpc
from hookkeeper.service.api.convert import config_fields, config_message
from hookkeeper.service.app.callback_configs import CallbackConfigs
from hookkeeper.service.domain.errors import invalid
from hookkeeper.service.domain.names import parse_config, parse_partner

Context = grpc.aio.ServicerContext[Any, Any]


class CallbackConfigServicer(pb_grpc.CallbackConfigServiceServicer):
    """Serves CallbackConfigService over the CallbackConfigs use cases."""

    def __init__(self, configs: CallbackConfigs) -> None:
        self._configs = configs

    async def CreateCallbackConfig(
        self, request: pb.CreateCallbackConfigRequest, context: Context
    ) -> pb.CreateCallbackConfigResponse:
        """Creates a configuration and returns it with its first secret."""
        partner_id = parse_partner(request.parent)
        if not request.HasField("callback_config"):
            raise invalid("callback_config", "is required")
        created = await self._configs.create(partner_id, config_fields(request.callback_config))
        return pb.CreateCallbackConfigResponse(
            callback_config=config_message(created.config), secret=created.secret
        )

    async def GetCallbackConfig(
        self, request: pb.GetCallbackConfigRequest, context: Context
    ) -> pb.GetCallbackConfigResponse:
        """Returns one configuration."""
        config = await self._configs.get(parse_config(request.name))
        return pb.GetCallbackConfigResponse(callback_config=config_message(config))

    async def ListCallbackConfigs(
        self, request: pb.ListCallbackConfigsRequest, context: Context
    ) -> pb.ListCallbackConfigsResponse:
        """Returns a page of a partner's configurations."""
        partner_id = parse_partner(request.parent)
        configs, token = await self._configs.list_page(
            partner_id, request.page_size, request.page_token
        )
        return pb.ListCallbackConfigsResponse(
            callback_configs=[config_message(c) for c in configs], next_page_token=token
        )

    async def UpdateCallbackConfig(
        self, request: pb.UpdateCallbackConfigRequest, context: Context
    ) -> pb.UpdateCallbackConfigResponse:
        """Updates the masked fields of a configuration."""
        name = parse_config(request.callback_config.name, field="callback_config.name")
        config = await self._configs.update(
            name, config_fields(request.callback_config), list(request.update_mask.paths)
        )
        return pb.UpdateCallbackConfigResponse(callback_config=config_message(config))

    async def DeleteCallbackConfig(
        self, request: pb.DeleteCallbackConfigRequest, context: Context
    ) -> pb.DeleteCallbackConfigResponse:
        """Deletes a configuration and its secrets."""
        name = parse_config(request.name)
        await self._configs.delete(name)
        return pb.DeleteCallbackConfigResponse(name=str(name))

    async def DisableCallbackConfig(
        self, request: pb.DisableCallbackConfigRequest, context: Context
    ) -> pb.DisableCallbackConfigResponse:
        """Disables a configuration: no attempts, deliveries paused, one e-mail."""
        config = await self._configs.disable(parse_config(request.name))
        return pb.DisableCallbackConfigResponse(callback_config=config_message(config))

    async def EnableCallbackConfig(
        self, request: pb.EnableCallbackConfigRequest, context: Context
    ) -> pb.EnableCallbackConfigResponse:
        """Enables a configuration: its paused deliveries resume in publish order."""
        config = await self._configs.enable(parse_config(request.name))
        return pb.EnableCallbackConfigResponse(callback_config=config_message(config))
