"""A runnable example webhook receiver (aiohttp) that verifies Hookkeeper
notifications with ``service.receiver.verify_notification``.

    RECEIVER_SECRETS_FILE=secrets.txt python examples/receiver.py 8000

The secrets file holds one secret per line: the current one, and during a
rotation overlap the previous one too (both are accepted). It is re-read on
every request, so a rotation needs no restart. Deduplicate by the
``transactionId`` header: delivery is at least once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aiohttp import web

from hookkeeper.service.receiver import SignatureError, verify_notification

_seen: set[str] = set()


def _secrets() -> list[str]:
    path = Path(os.environ.get("RECEIVER_SECRETS_FILE", "secrets.txt"))
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return lines[:2]


async def notification(request: web.Request) -> web.Response:
    """Verifies, deduplicates and 'processes' one notification."""
    if request.method == "GET":  # the connectivity check of a new callback URL
        print("connectivity check received", flush=True)
        return web.Response(text="ok")
    body = await request.read()
    try:
        event = verify_notification(request.headers, body, _secrets())
    except SignatureError as error:
        print(f"REJECTED: {error}", flush=True)
        return web.Response(status=401, text="invalid signature")
    transaction = request.headers.get("transactionId", "")
    if transaction in _seen:
        return web.Response(text="duplicate ignored")
    _seen.add(transaction)
    print(
        f"VERIFIED {event['eventType']} {event['eventId']} (transactionId {transaction}): "
        f"payload {event['payload']}",
        flush=True,
    )
    return web.Response(text="ok")


def main() -> None:
    """Serves on 127.0.0.1:PORT until interrupted."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    app = web.Application()
    app.router.add_route("*", "/", notification)
    print(f"receiver listening on http://127.0.0.1:{port}/", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
