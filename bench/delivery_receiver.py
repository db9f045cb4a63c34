"""The benchmark's webhook receiver: answers every request 200 at once and
counts them (``/hang`` never answers in time). ``GET /count`` reports and
``POST /reset`` zeroes the count of
notification POSTs (to ``/hook``). Runs in its own process so its CPU is not
charged to the sender being measured.

Usage: python -m bench.delivery_receiver PORT
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

_count = 0


async def _hook(request: web.Request) -> web.Response:
    global _count
    await request.read()
    if request.method == "POST":
        _count += 1
    return web.Response(text="ok")


async def _hang(request: web.Request) -> web.Response:
    """A hanging endpoint: answers only once the sender has given up."""
    await request.read()
    await asyncio.sleep(3600)
    return web.Response(text="late")


async def _get_count(_: web.Request) -> web.Response:
    return web.json_response({"count": _count})


async def _reset(_: web.Request) -> web.Response:
    global _count
    _count = 0
    return web.json_response({"count": 0})


def main() -> None:
    """Serves until killed."""
    app = web.Application()
    app.router.add_route("*", "/hook", _hook)
    app.router.add_route("*", "/hang", _hang)
    app.router.add_get("/count", _get_count)
    app.router.add_post("/reset", _reset)
    print("ready", flush=True)
    # A short shutdown: /hang handlers are still waiting when the bench ends.
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=None,
        print=None,
        shutdown_timeout=0.5,
    )


if __name__ == "__main__":
    main()
