"""The gRPC transport in-process, over a real channel, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.notifications.v1 import secret_rotation_pb2 as sr
from hookkeeper.notifications.v1 import secret_rotation_pb2_grpc as sr_grpc
from hookkeeper.service.app.context import AppContext
from hookkeeper.service.server import start_server

TOKEN = "test-token-0123456789abcdef"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture
async def channel(app_context: AppContext) -> AsyncIterator[grpc.aio.Channel]:
    running = await start_server(app_context, "127.0.0.1:0", f"tests={TOKEN}")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as chan:
        yield chan
    await running.stop(0)


def new_config(**overrides: object) -> cc.CallbackConfig:
    values: dict[str, object] = {
        "callback_url": "https://testcallbackurl.com",
        "api_key": "newapikey",
        "contact_email": "partner@email.com",
    }
    values.update(overrides)
    return cc.CallbackConfig(**values)  # type: ignore[arg-type]


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    fields = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        fields += [v.field for v in bad.field_violations]
    return fields


async def test_every_rpc_needs_a_known_token(channel: grpc.aio.Channel) -> None:
    stub = cc_grpc.CallbackConfigServiceStub(channel)
    request = cc.CreateCallbackConfigRequest(parent="partners/acme", callback_config=new_config())
    for metadata in (
        (),
        (("authorization", "Bearer wrong-token-value-xyz"),),
        (("authorization", TOKEN),),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateCallbackConfig(request, metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    listed = await stub.ListCallbackConfigs(
        cc.ListCallbackConfigsRequest(parent="partners/acme"), metadata=AUTH
    )
    assert list(listed.callback_configs) == []  # nothing was created by the refused calls


async def test_health_and_reflection_need_no_token(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "hookkeeper.notifications.v1.CallbackConfigService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_invalid_argument_names_every_bad_field(channel: grpc.aio.Channel) -> None:
    stub = cc_grpc.CallbackConfigServiceStub(channel)
    bad = new_config(callback_url="ftp://x", contact_email="nope", request_timeout_seconds=61)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateCallbackConfig(
            cc.CreateCallbackConfigRequest(parent="partners/acme", callback_config=bad),
            metadata=AUTH,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == [
        "callback_config.callback_url",
        "callback_config.contact_email",
        "callback_config.request_timeout_seconds",
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetCallbackConfig(cc.GetCallbackConfigRequest(name="nonsense"), metadata=AUTH)
    assert violations(caught.value) == ["name"]


async def test_round_trip_never_returns_the_api_key(channel: grpc.aio.Channel) -> None:
    stub = cc_grpc.CallbackConfigServiceStub(channel)
    created = await stub.CreateCallbackConfig(
        cc.CreateCallbackConfigRequest(
            parent="partners/acme", callback_config=new_config(request_timeout_seconds=50)
        ),
        metadata=AUTH,
    )
    assert len(created.secret) == 24
    config = created.callback_config
    assert config.api_key == "" and config.request_timeout_seconds == 50
    assert config.name.startswith("partners/acme/callbackConfigs/")
    got = await stub.GetCallbackConfig(cc.GetCallbackConfigRequest(name=config.name), metadata=AUTH)
    assert got.callback_config == config

    update = cc.CallbackConfig(name=config.name, api_key="rotated-key", contact_email="x@y.co")
    updated = await stub.UpdateCallbackConfig(
        cc.UpdateCallbackConfigRequest(
            callback_config=update, update_mask=field_mask_pb2.FieldMask(paths=["api_key"])
        ),
        metadata=AUTH,
    )
    assert updated.callback_config.contact_email == "partner@email.com"  # not in the mask
    assert updated.callback_config.api_key == ""

    rotation = sr_grpc.SecretRotationServiceStub(channel)
    refreshed = await rotation.RefreshSecret(
        sr.RefreshSecretRequest(name=config.name, keep_existing_secret_active=True), metadata=AUTH
    )
    assert refreshed.name == config.name and len(refreshed.secret) == 24
    signed = await rotation.SignNotification(
        sr.SignNotificationRequest(name=config.name, payload=b"{}"), metadata=AUTH
    )
    assert signed.signature.startswith("sha256=") and signed.signature.count(",") == 1

    deleted = await stub.DeleteCallbackConfig(
        cc.DeleteCallbackConfigRequest(name=config.name), metadata=AUTH
    )
    assert deleted.name == config.name
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetCallbackConfig(cc.GetCallbackConfigRequest(name=config.name), metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
