"""The access interceptor on a real grpc.aio server: a streaming method
(none exists yet) is refused rather than let through unchecked."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from hookkeeper.service.api.auth import AccessInterceptor
from hookkeeper.service.domain.principals import all_access

TOKEN = "interceptor-token-0123456789"


class _Streaming(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """One server-streaming method, answering two messages."""

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        async def stream(_request: bytes, _context: Any) -> Any:
            yield b"one"
            yield b"two"

        if details.method == "/test.Stream/Items":
            return grpc.unary_stream_rpc_method_handler(stream)
        return None


async def test_streaming_methods_are_refused() -> None:
    server = grpc.aio.server(interceptors=[AccessInterceptor([all_access("t", TOKEN)])])
    server.add_generic_rpc_handlers((_Streaming(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_stream("/test.Stream/Items", None, None)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in call(b"", metadata=(("authorization", f"Bearer {TOKEN}"),)):
                    pass
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "streaming" in (caught.value.details() or "")
    finally:
        await server.stop(0)
