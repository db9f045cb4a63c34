"""The gateway's gRPC client: one channel to the service, per-request call
options (service token, deadline, W3C trace context) and error mapping."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc

from hookkeeper.gateway.errors import DEADLINE_EXCEEDED, api_error, from_rpc_error
from hookkeeper.notifications.v1 import (
    callback_config_pb2_grpc,
    partner_pb2_grpc,
    secret_rotation_pb2_grpc,
)

S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")

# The service accepts API keys up to 1 MiB; requests stay below 4 MiB.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class Stubs:
    """Service stubs over one shared HTTP/2 channel (it multiplexes).

    The channel is opened on first use, inside the server's event loop (a
    grpc.aio channel belongs to the loop it was created in). Another
    capability's stub: ``ctx.stubs.stub(its_pb2_grpc.ItsServiceStub)``.
    """

    def __init__(
        self,
        target: str,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._target = target
        self._interceptors = list(interceptors)
        # TLS (and with a client certificate, mTLS); None is plaintext.
        self._credentials = credentials
        self._channel: grpc.aio.Channel | None = None
        self._stubs: dict[type, Any] = {}

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel, opened on first use."""
        if self._channel is None:
            options = [
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                # Reconnect within half a second of the service coming
                # back (gRPC's default backoff grows to two minutes), so
                # the gateway serves again within a second.
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 500),
            ]
            interceptors = self._interceptors or None
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(
                    self._target, options=options, interceptors=interceptors
                )
            else:
                self._channel = grpc.aio.secure_channel(
                    self._target, self._credentials, options=options, interceptors=interceptors
                )
        return self._channel

    def stub(self, stub_class: Callable[[grpc.aio.Channel], S]) -> S:
        """The (cached) stub of ``stub_class`` over the shared channel."""
        found = self._stubs.get(stub_class)  # type: ignore[call-overload]
        if found is None:
            found = self._stubs[stub_class] = stub_class(self.channel)  # type: ignore[index]
        return cast(S, found)

    @property
    def callback_configs(self) -> callback_config_pb2_grpc.CallbackConfigServiceStub:
        """CallbackConfigService."""
        return self.stub(callback_config_pb2_grpc.CallbackConfigServiceStub)

    @property
    def secret_rotation(self) -> secret_rotation_pb2_grpc.SecretRotationServiceStub:
        """SecretRotationService."""
        return self.stub(secret_rotation_pb2_grpc.SecretRotationServiceStub)

    @property
    def partners(self) -> partner_pb2_grpc.PartnerServiceStub:
        """PartnerService."""
        return self.stub(partner_pb2_grpc.PartnerServiceStub)

    async def close(self) -> None:
        """Closes the channel if it was opened (in-flight calls are cancelled)."""
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
            self._stubs.clear()


def channel_credentials(
    ca: Path | None, cert: Path | None, key: Path | None
) -> grpc.ChannelCredentials | None:
    """TLS credentials for the service channel: the CA that signed the
    service's certificate (the system's roots when None) and, for mTLS, the
    gateway's certificate and key. None (plaintext) when none is set."""
    if ca is None and cert is None and key is None:
        return None
    if (cert is None) != (key is None):
        raise ValueError(
            "set both HOOKKEEPER_GATEWAY_GRPC_TLS_CERT_FILE and "
            "HOOKKEEPER_GATEWAY_GRPC_TLS_KEY_FILE"
        )
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes() if ca else None,
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


@dataclass(frozen=True)
class CallOptions:
    """What every RPC of one GraphQL request carries."""

    # `authorization` with the gateway's service token, plus `traceparent` /
    # `tracestate` of the incoming request when it had them. Out of the repr:
    # the token is a credential.
    metadata: tuple[tuple[str, str], ...] = field(repr=False)
    # time.monotonic() value when the request's budget runs out.
    deadline: float

    def timeout(self) -> float:
        """Seconds left for the next RPC; DEADLINE_EXCEEDED once none are."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise api_error(DEADLINE_EXCEEDED, "the request's deadline passed; retry later")
        return left


def call_options(
    service_token: str, trace_headers: Mapping[str, str], budget_seconds: float
) -> CallOptions:
    """Call options for a request that may run ``budget_seconds`` from now."""
    metadata = [("authorization", f"Bearer {service_token}")]
    metadata += [(key, value) for key, value in trace_headers.items()]
    return CallOptions(tuple(metadata), time.monotonic() + budget_seconds)


async def call(
    method: Callable[..., Resp],
    request: Req,
    options: CallOptions,
    *,
    fields: Mapping[str, str] | None = None,
    what: str = "resource",
) -> Resp:
    """Calls one unary RPC with the request's metadata and remaining deadline,
    turning a failed status into the GraphQL error partners see."""
    try:
        # grpc-stubs types aio stubs like blocking ones; the call is awaitable.
        pending = method(request, timeout=options.timeout(), metadata=options.metadata)
        return await cast(Awaitable[Resp], pending)
    except grpc.aio.AioRpcError as error:
        raise from_rpc_error(error, fields or {}, what) from None
