"""The access interceptor on a real grpc.aio server with streaming methods:
a server-streaming one gets the same principal checks as a unary one, a
client-streaming one is refused rather than let through unchecked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from hookkeeper.service.api.auth import AccessInterceptor
from hookkeeper.service.domain.principals import Principal, all_access, token_sha256

TOKEN = "interceptor-token-0123456789"
SCOPED = "interceptor-scoped-0123456789"


class _Streaming(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """A server-streaming and a client-streaming method."""

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        async def items(_request: bytes, _context: Any) -> AsyncIterator[bytes]:
            yield b"one"
            yield b"two"

        async def upload(requests: AsyncIterator[bytes], _context: Any) -> bytes:
            return b"".join([r async for r in requests])

        if details.method == "/test.Stream/Items":
            return grpc.unary_stream_rpc_method_handler(items)
        if details.method == "/test.Stream/Upload":
            return grpc.stream_unary_rpc_method_handler(upload)
        return None


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_streaming_methods_are_checked_or_refused() -> None:
    scoped = Principal("scoped", ("test.Other/*",), ("*",), token_sha256=token_sha256(SCOPED))
    server = grpc.aio.server(interceptors=[AccessInterceptor([all_access("t", TOKEN), scoped])])
    server.add_generic_rpc_handlers((_Streaming(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            items = channel.unary_stream("/test.Stream/Items", None, None)
            assert [i async for i in items(b"", metadata=_auth(TOKEN))] == [b"one", b"two"]
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                [i async for i in items(b"", metadata=_auth(SCOPED))]
            assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
            upload = channel.stream_unary("/test.Stream/Upload", None, None)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await upload(iter([b"a"]), metadata=_auth(TOKEN))
            assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert "client-streaming" in (refused.value.details() or "")
    finally:
        await server.stop(0)
