"""Every RPC of every service goes through the one error choke point
(``api/errors.py``): the methods are read from the proto descriptors, not
from the servicers, so a new RPC is covered the day it is added."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.rpc import error_details_pb2
from grpc_status import rpc_status

import hookkeeper.notifications.v1 as generated
from hookkeeper.service.api import auth
from hookkeeper.service.api.audit_servicer import AuditServicer
from hookkeeper.service.api.callback_config_servicer import CallbackConfigServicer
from hookkeeper.service.api.notification_servicer import NotificationServicer
from hookkeeper.service.api.partner_servicer import PartnerServicer
from hookkeeper.service.api.secret_rotation_servicer import SecretRotationServicer
from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.crypto.keyring import Keyring, generate_key_entry
from hookkeeper.service.domain.errors import NotFound, Unavailable, invalid
from hookkeeper.service.server import SERVICE_NAMES, start_server
from hookkeeper.service.store import migrate
from hookkeeper.service.store.database import Database
from tests.support.sqlite import sqlite_url

TOKEN = "choke-point-token-0123456789"
AUTH = (("authorization", f"Bearer {TOKEN}"),)

SERVICERS: dict[str, type[Any]] = {
    "hookkeeper.notifications.v1.CallbackConfigService": CallbackConfigServicer,
    "hookkeeper.notifications.v1.SecretRotationService": SecretRotationServicer,
    "hookkeeper.notifications.v1.PartnerService": PartnerServicer,
    "hookkeeper.notifications.v1.NotificationService": NotificationServicer,
    "hookkeeper.notifications.v1.AuditService": AuditServicer,
}


def _proto_modules() -> list[ModuleType]:
    """Every generated ``*_pb2`` module of the package: a new proto file is
    found without anyone listing it here."""
    names = sorted(
        info.name for info in pkgutil.iter_modules(generated.__path__) if info.name.endswith("_pb2")
    )
    return [importlib.import_module(f"{generated.__name__}.{name}") for name in names]


def every_method() -> list[MethodDescriptor]:
    """Every method of every service the proto files declare."""
    return [
        method
        for module in _proto_modules()
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


def test_the_server_serves_every_declared_service() -> None:
    declared = {m.containing_service.full_name for m in every_method()}
    assert declared == set(SERVICE_NAMES) == set(SERVICERS)
    # The campaign (tests/e2e/test_grpc_campaign.py) is only as good as this count.
    assert len(every_method()) >= 18


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[AppContext]:
    url = sqlite_url(tmp_path)
    await asyncio.to_thread(migrate.upgrade, url)
    database = Database(url, pool_size=2)
    yield AppContext(database, Keyring.parse(generate_key_entry()), Policy())
    await database.close()


async def _start(context: AppContext) -> tuple[Any, grpc.aio.Channel]:
    running = await start_server(context, "127.0.0.1:0", f"tests={TOKEN}")
    return running, grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def _violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "INVALID_ARGUMENT without a google.rpc.Status"
    fields: list[str] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        fields += [v.field for v in bad.field_violations]
    return fields


async def _raw_call(channel: grpc.aio.Channel, method: str, body: bytes) -> grpc.aio.AioRpcError:
    call = channel.unary_unary(method, None, None)  # no serializers: bytes as they are
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(body, metadata=AUTH, timeout=10)
    return caught.value


async def test_undecodable_requests_are_invalid_argument_on_every_rpc(
    context: AppContext,
) -> None:
    running, channel = await _start(context)
    try:
        for method in every_method():
            # Field 1 of every request message is a string or a message; a
            # length running past the end is a truncated message.
            error = await _raw_call(channel, _path(method), b"\x0a\x05ab")
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (_path(method), error)
            first = method.input_type.fields_by_number[1].name
            assert _violated_fields(error) == [first], _path(method)
            # Invalid UTF-8 (an encoded lone surrogate) in that string field.
            if method.input_type.fields_by_number[1].type == 9:  # TYPE_STRING
                error = await _raw_call(channel, _path(method), b"\x0a\x03\xed\xa0\x80")
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, _path(method)
                assert _violated_fields(error) == [first], _path(method)
    finally:
        await channel.close(None)
        await running.stop(0)


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (RuntimeError("a bug with internal detail"), grpc.StatusCode.INTERNAL),
        (Unavailable("the database cannot be reached"), grpc.StatusCode.UNAVAILABLE),
        (NotFound("partners/x/things/y"), grpc.StatusCode.NOT_FOUND),
        (invalid("some_field", "is bad"), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_every_rpc_maps_what_its_servicer_raises(
    context: AppContext,
    monkeypatch: pytest.MonkeyPatch,
    raised: Exception,
    code: grpc.StatusCode,
) -> None:
    """No servicer method maps errors itself: each one is replaced by a method
    that raises, and the status must still be the mapped one."""

    async def raising(self: Any, request: Any, context: Any) -> Any:
        raise raised

    for method in every_method():
        monkeypatch.setattr(SERVICERS[method.containing_service.full_name], method.name, raising)
    running, channel = await _start(context)
    try:
        for method in every_method():
            request = message_factory.GetMessageClass(method.input_type)()
            error = await _raw_call(channel, _path(method), request.SerializeToString())
            assert error.code() == code, (_path(method), error.code())
            if code == grpc.StatusCode.INTERNAL:
                assert error.details() == "internal error"
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                assert _violated_fields(error) == ["some_field"]
    finally:
        await channel.close(None)
        await running.stop(0)


async def test_errors_of_access_control_are_mapped_too(
    context: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mapping sits outside access control: a failure there is INTERNAL
    (logged), never grpc's UNKNOWN."""

    def broken(request: Any) -> tuple[str, list[str]]:
        raise RuntimeError("a bug in access control")

    monkeypatch.setattr(auth, "request_partners", broken)
    running, channel = await _start(context)
    try:
        # Access control reads the request of unary methods only.
        for method in (m for m in every_method() if not m.server_streaming):
            request = message_factory.GetMessageClass(method.input_type)()
            error = await _raw_call(channel, _path(method), request.SerializeToString())
            assert error.code() == grpc.StatusCode.INTERNAL, (_path(method), error.code())
    finally:
        await channel.close(None)
        await running.stop(0)


async def test_authentication_comes_before_decoding(context: AppContext) -> None:
    running, channel = await _start(context)
    try:
        for method in every_method():
            call = channel.unary_unary(_path(method), None, None)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(b"\x0a\x05ab", timeout=10)  # undecodable, and no token
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, _path(method)
    finally:
        await channel.close(None)
        await running.stop(0)
