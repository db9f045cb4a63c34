"""The baseline of the gRPC benchmark: a bare ``grpc.aio`` server whose one
unary method answers with the bytes it was sent (no protos, no database).

``python -m bench.echo_server HOST:PORT`` serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import grpc

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Echo"


async def _echo(request: bytes, _context: Any) -> bytes:
    return request


async def serve(listen: str) -> None:
    """Serves the echo method on ``listen`` until SIGTERM or SIGINT."""
    server = grpc.aio.server()
    # No serializers: the handler sees and returns raw bytes.
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    if server.add_insecure_port(listen) == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
