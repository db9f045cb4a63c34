"""Benchmark of the public GraphQL gateway against the same RPCs called
directly, in one run.

Processes: ``hookkeeper serve`` on a fresh PostgreSQL database, ``hookkeeper
gateway`` in front of it, and this one as the load generator. Each mutation
(create, then refresh with keepExistingSecretActive) runs for a fixed time
after a warm-up, first as direct gRPC calls over one grpc.aio channel, then as
GraphQL POSTs to the gateway over keep-alive HTTP/1.1 connections, with the
same number of concurrent callers. The HTTP client is a minimal one on asyncio
streams so the client's own cost stays close to grpc.aio's.

BENCH_SECONDS and BENCH_WARMUP (seconds per measurement) shorten or lengthen
a run; HOOKKEEPER_TEST_POSTGRES_URL chooses the PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc

from bench.grpc_api import _create_database
from bench.run import Section
from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.notifications.v1 import secret_rotation_pb2 as sr
from hookkeeper.notifications.v1 import secret_rotation_pb2_grpc as sr_grpc
from hookkeeper.service.crypto.keyring import generate_key_entry
from tests.support.gateway_stack import wait_for_http
from tests.support.postgres import drop_database as _drop_database
from tests.support.processes import (
    Process,
    base_env,
    free_port,
    run_cli,
    start,
    wait_for_grpc_health,
)

CONCURRENCY = 16
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "1.5"))
SERVICE_TOKEN = "s" * 32
TARGET = 0.4
CREATE = (
    "mutation Create($input: CreateNotificationCallbackConfigInput!) {"
    " createNotificationCallbackConfig(input: $input) {"
    " callbackConfig { id secretExpirationDateTime } secret } }"
)
REFRESH = (
    "mutation Refresh($id: ID!) { refreshNotificationCallbackConfigSecret("
    " input: {callbackConfigId: $id, keepExistingSecretActive: true})"
    " { callbackConfigId secret secretExpirationDateTime previousSecretExpirationDateTime } }"
)
CONFIG = {
    "callbackUrl": "https://bench.example.com/hook",
    "apiKey": "bench-api-key",
    "contactEmail": "bench@example.com",
    "requestTimeoutSeconds": 30,
}


@dataclass
class Result:
    """One measurement: completed calls per second and latency percentiles."""

    label: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


class HttpConnection:
    """One keep-alive HTTP/1.1 connection posting JSON (just enough for this)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self._host, self._port = host, port
        self._head = (
            f"POST /graphql HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        ).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """POSTs ``body``; the decoded JSON answer (raises on a non-200 status).

        A kept-alive connection the server closed while idle is reopened once.
        """
        reused = self._reader is not None
        try:
            return await self._post(body)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            if not reused:
                raise
            return await self._post(body)

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        payload = json.dumps(body).encode()
        self._writer.write(self._head + f"Content-Length: {len(payload)}\r\n\r\n".encode())
        self._writer.write(payload)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        answer = json.loads(await self._reader.readexactly(length))
        if status != b"200" or "errors" in answer:
            raise RuntimeError(f"gateway answered {status!r}: {answer}")
        return cast(dict[str, Any], answer)

    async def close(self) -> None:
        """Closes the connection (the next post opens a new one)."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _run(label: str, calls: list[Callable[[], Awaitable[None]]]) -> Result:
    """Each caller loops its call; latencies after the warm-up are kept."""
    latencies: list[float] = []
    errors = 0
    start_at = time.perf_counter()
    measure_from = start_at + WARMUP
    stop_at = measure_from + SECONDS

    async def loop(call: Callable[[], Awaitable[None]]) -> None:
        nonlocal errors
        while (now := time.perf_counter()) < stop_at:
            try:
                await call()
            except Exception:
                errors += 1
                continue
            if now >= measure_from:
                latencies.append(time.perf_counter() - now)

    await asyncio.gather(*(loop(call) for call in calls))
    latencies.sort()
    count = len(latencies)
    return Result(
        label,
        rps=count / SECONDS,
        p50_ms=latencies[count // 2] * 1000 if count else 0.0,
        p99_ms=latencies[min(count - 1, int(count * 0.99))] * 1000 if count else 0.0,
        errors=errors,
    )


Calls = list[Callable[[], Awaitable[None]]]


async def _direct_calls(channel: grpc.aio.Channel, partner_id: str) -> dict[str, Calls]:
    """One create and one refresh caller per concurrent slot, over gRPC."""
    metadata = (("authorization", f"Bearer {SERVICE_TOKEN}"),)
    configs = cc_grpc.CallbackConfigServiceStub(channel)
    rotation = sr_grpc.SecretRotationServiceStub(channel)
    config = cc.CallbackConfig(
        callback_url="https://bench.example.com/hook",
        api_key="bench-api-key",
        contact_email="bench@example.com",
        request_timeout_seconds=30,
    )
    create_request = cc.CreateCallbackConfigRequest(
        parent=f"partners/{partner_id}", callback_config=config
    )

    async def create() -> None:
        await configs.CreateCallbackConfig(create_request, metadata=metadata, timeout=10)

    def refresher(name: str) -> Callable[[], Awaitable[None]]:
        request = sr.RefreshSecretRequest(name=name, keep_existing_secret_active=True)

        async def refresh() -> None:
            await rotation.RefreshSecret(request, metadata=metadata, timeout=10)

        return refresh

    names = []
    for _ in range(CONCURRENCY):
        reply = await configs.CreateCallbackConfig(create_request, metadata=metadata)
        names.append(reply.callback_config.name)
    return {"create": [create] * CONCURRENCY, "refresh": [refresher(n) for n in names]}


async def _gateway_calls(connections: list[HttpConnection]) -> dict[str, Calls]:
    """One create and one refresh caller per connection, as GraphQL POSTs."""
    ids = []
    for connection in connections:
        answer = await connection.post({"query": CREATE, "variables": {"input": CONFIG}})
        ids.append(answer["data"]["createNotificationCallbackConfig"]["callbackConfig"]["id"])

    def poster(connection: HttpConnection, body: dict[str, Any]) -> Callable[[], Awaitable[None]]:
        async def post() -> None:
            await connection.post(body)

        return post

    return {
        "create": [
            poster(c, {"query": CREATE, "variables": {"input": CONFIG}}) for c in connections
        ],
        "refresh": [
            poster(c, {"query": REFRESH, "variables": {"id": i}})
            for c, i in zip(connections, ids, strict=True)
        ],
    }


# (operation, direct RPC, GraphQL mutation)
OPERATIONS = [
    ("create", "CreateCallbackConfig", "createNotificationCallbackConfig"),
    ("refresh", "RefreshSecret", "refreshNotificationCallbackConfigSecret"),
]


async def _measure_all(api: str, partner_id: str, port: int, token: str) -> list[Result]:
    """Direct, gateway, direct again for each operation: the ratio uses the
    mean of the two direct runs, so drift on a busy machine shows instead of
    skewing it."""
    connections = [HttpConnection("127.0.0.1", port, token) for _ in range(CONCURRENCY)]
    results: list[Result] = []
    try:
        async with grpc.aio.insecure_channel(api) as channel:
            direct = await _direct_calls(channel, partner_id)
            through = await _gateway_calls(connections)
            for op, rpc_name, mutation in OPERATIONS:
                results.append(await _run(f"{rpc_name} (direct gRPC, first)", direct[op]))
                results.append(await _run(f"{mutation} (gateway)", through[op]))
                results.append(await _run(f"{rpc_name} (direct gRPC, last)", direct[op]))
    finally:
        for connection in connections:
            await connection.close()
    return results


def _render(results: list[Result]) -> Section:
    lines = [
        f"{CONCURRENCY} concurrent callers in this process; each measurement runs "
        f"{SECONDS:g} s after a {WARMUP:g} s warm-up. `hookkeeper serve` runs on a fresh "
        "PostgreSQL database; `hookkeeper gateway` (uvicorn + httptools, one process) "
        "calls it over one gRPC channel. Direct callers share one grpc.aio channel; "
        "gateway callers each keep one HTTP/1.1 connection (a minimal asyncio client). "
        "The gateway caches the partner token, as in production. Each mutation is "
        "measured directly before and after the gateway run; the ratio uses their mean. "
        f"Service, gateway, load and PostgreSQL share {os.cpu_count()} CPUs.",
        "",
        "| mutation | requests/s | p50 ms | p99 ms | errors | ratio to direct |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    targets = []
    for index, (_op, _rpc, mutation) in enumerate(OPERATIONS):
        first, graphql, last = results[3 * index : 3 * index + 3]
        baseline = (first.rps + last.rps) / 2
        ratio = graphql.rps / baseline if baseline else 0.0
        for result in (first, graphql, last):
            lines.append(
                f"| {result.label} | {result.rps:.0f} | {result.p50_ms:.2f} | "
                f"{result.p99_ms:.2f} | {result.errors} | "
                f"{result.rps / baseline if baseline else 0.0:.2f} |"
            )
        met = ratio >= TARGET and not any(r.errors for r in (first, graphql, last))
        targets.append(
            (
                f"{mutation} through the gateway at least {TARGET:.0%} of direct "
                f"(measured {ratio:.0%})",
                met,
            )
        )
    return Section("GraphQL gateway vs direct gRPC", "\n".join(lines), targets)


async def measure() -> Section:
    """Starts the service and the gateway, measures both paths, reports them."""
    url, database = await _create_database()
    processes: list[Process] = []
    with tempfile.TemporaryDirectory(prefix="hookkeeper-bench-gateway-") as tmp_dir:
        tmp = Path(tmp_dir)
        try:
            api = f"127.0.0.1:{free_port()}"
            port = free_port()
            env = base_env(
                {
                    "HOOKKEEPER_DATABASE_URL": url,
                    "HOOKKEEPER_VAR_DIR": str(tmp / "var"),
                    "HOOKKEEPER_MASTER_KEYS": generate_key_entry(),
                    "HOOKKEEPER_SERVICE_TOKENS": f"gateway={SERVICE_TOKEN}",
                    "HOOKKEEPER_GRPC_LISTEN": api,
                    "HOOKKEEPER_GATEWAY_GRPC_TARGET": api,
                    "HOOKKEEPER_GATEWAY_LISTEN": f"127.0.0.1:{port}",
                    "HOOKKEEPER_LOG_LEVEL": "WARNING",
                }
            )
            await asyncio.to_thread(run_cli, ["migrate"], env)
            created = await asyncio.to_thread(run_cli, ["partner", "create", "Bench"], env)
            partner_id, token = created.strip().splitlines()[0], created.strip().splitlines()[-1]
            processes.append(start(["serve"], env, tmp / "serve.log"))
            await asyncio.to_thread(wait_for_grpc_health, api)
            processes.append(start(["gateway"], env, tmp / "gateway.log"))
            await asyncio.to_thread(
                wait_for_http, f"http://127.0.0.1:{port}/healthz", processes[-1]
            )
            results = await _measure_all(api, partner_id, port, token)
        finally:
            for process in reversed(processes):
                process.terminate()
            await _drop_database(database)
    return _render(results)
