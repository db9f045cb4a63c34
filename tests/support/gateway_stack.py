"""A real ``hookkeeper serve`` + ``hookkeeper gateway`` pair for end-to-end
tests, on its own temp dir, SQLite file, keys, tokens and free ports, with a
synchronous httpx client for real HTTP requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx

from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.app.partners import Partners
from hookkeeper.service.crypto.keyring import Keyring, generate_key_entry
from hookkeeper.service.store.database import Database
from tests.support.processes import (
    Process,
    base_env,
    free_port,
    run_cli,
    start,
    wait_for_grpc_health,
)

SERVICE_TOKEN = "gateway-e2e-" + "s" * 24


def wait_for_http(url: str, process: Process, timeout: float = 20) -> None:
    """Blocks until ``url`` answers (any status), failing fast if ``process`` died."""
    deadline = time.monotonic() + timeout
    while True:
        if process.popen.poll() is not None:
            raise AssertionError(f"process exited early:\n{process.output()}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing answers at {url}:\n{process.output()}")
        time.sleep(0.05)


@dataclass
class Stack:
    """A running service and gateway, and how to reach them."""

    tmp: Path
    env: dict[str, str]
    grpc_target: str
    service: Process
    gateways: list[Process] = field(default_factory=list)
    url: str = ""

    def start_gateway(self, name: str, **extra: str) -> str:
        """Starts another gateway (e.g. with other settings); its /graphql URL."""
        port = free_port()
        env = {**self.env, "HOOKKEEPER_GATEWAY_LISTEN": f"127.0.0.1:{port}", **extra}
        process = start(["gateway"], env, self.tmp / f"{name}.log")
        self.gateways.append(process)
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process)
        return f"http://127.0.0.1:{port}/graphql"

    def partner(self, name: str) -> tuple[str, str]:
        """A new partner: (partner id, token), through the same use case as
        ``hookkeeper partner create`` but in-process, which is much faster
        than a CLI process per partner (the CLI has its own tests)."""

        async def create() -> tuple[str, str]:
            database = Database(f"sqlite+aiosqlite:///{self.tmp / 'hookkeeper.db'}")
            keyring = Keyring.parse(self.env["HOOKKEEPER_MASTER_KEYS"])
            try:
                issued = await Partners(AppContext(database, keyring, Policy())).create(name)
            finally:
                await database.close()
            return issued.partner.partner_id, issued.token

        return asyncio.run(create())

    def post(
        self,
        query: str,
        token: str | None,
        variables: Mapping[str, Any] | None = None,
        *,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POSTs one GraphQL operation as a partner (or anonymously)."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = dict(variables)
        return httpx.post(url or self.url, json=body, headers=sent, timeout=20)

    def stop(self) -> None:
        """SIGTERM to every process."""
        for process in [*self.gateways, self.service]:
            process.terminate()


def start_stack(
    tmp: Path, grpc_credentials: grpc.ChannelCredentials | None = None, **extra: str
) -> Stack:
    """Migrates a fresh SQLite database, starts the service and one gateway
    (``grpc_credentials`` reach a service that speaks TLS)."""
    grpc_port = free_port()
    env = base_env(
        {
            "HOOKKEEPER_VAR_DIR": str(tmp),
            "HOOKKEEPER_MASTER_KEYS": generate_key_entry(),
            "HOOKKEEPER_SERVICE_TOKENS": f"gateway={SERVICE_TOKEN}",
            "HOOKKEEPER_GRPC_LISTEN": f"127.0.0.1:{grpc_port}",
            "HOOKKEEPER_GATEWAY_GRPC_TARGET": f"127.0.0.1:{grpc_port}",
            "HOOKKEEPER_LOG_FORMAT": "text",
            # Tests send bursts from one address; the limits have tests of
            # their own (tests/e2e/test_gateway_rate_limits.py).
            "HOOKKEEPER_GATEWAY_RATE_LIMIT": "10000/second",
            "HOOKKEEPER_GATEWAY_ANON_RATE_LIMIT": "10000/second",
            **extra,
        }
    )
    run_cli(["migrate"], env)
    service = start(["serve"], env, tmp / "serve.log")
    stack = Stack(tmp=tmp, env=env, grpc_target=f"127.0.0.1:{grpc_port}", service=service)
    try:
        wait_for_grpc_health(stack.grpc_target, credentials=grpc_credentials)
        stack.url = stack.start_gateway("gateway")
    except BaseException:
        stack.stop()
        raise
    return stack
