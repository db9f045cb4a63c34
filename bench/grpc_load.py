"""The load generator of the gRPC benchmark, run in its own process.

``python -m bench.grpc_load --api HOST:PORT --echo HOST:PORT --token T`` runs
each operation for a fixed time with N concurrent callers (asyncio tasks over
one ``grpc.aio`` channel), after a warm-up, and prints one JSON object per
operation: requests per second, p50 and p99 latency in milliseconds, errors,
and the serving process's CPU milliseconds per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from bench.echo_server import METHOD as ECHO_METHOD
from hookkeeper.notifications.v1 import callback_config_pb2 as configs_pb
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as configs_grpc
from hookkeeper.notifications.v1 import secret_rotation_pb2 as secrets_pb

# A realistic notification body, about 1 KiB.
PAYLOAD = json.dumps(
    {
        "eventType": "RESERVATION_CREATED",
        "reservation": {"id": "r-123456", "property": "p-42", "note": "x" * 900},
    }
).encode()


class PoolExhausted(Exception):
    """Delete ran out of configurations to delete (counted as an error)."""


Call = Callable[[int, int], Awaitable[object]]
T = TypeVar("T")


@dataclass
class Result:
    """One operation's figures."""

    op: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    # CPU time the serving process spent per request (user + system), when known.
    server_cpu_ms: float | None
    # The same for this load generator: near one CPU-second per second means the
    # rate is limited by the client, not by the server.
    client_cpu_ms: float | None
    # The same for every PostgreSQL process on this machine (backends, WAL
    # writer, checkpointer): the database's share of each request.
    db_cpu_ms: float | None = None


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), else None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat(5); here after pid and comm.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds_of(pids: Sequence[int]) -> float | None:
    """The summed CPU time of several processes (the workers of one server)."""
    times = [_cpu_seconds(pid) for pid in pids]
    if not times or any(t is None for t in times):
        return None
    return sum(t for t in times if t is not None)


def _postgres_cpu_seconds() -> dict[int, float]:
    """CPU time of every process named ``postgres`` (Linux /proc), by pid."""
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone in between
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return times


def _postgres_cpu_between(before: dict[int, float], after: dict[int, float]) -> float | None:
    """PostgreSQL's CPU seconds between two samples: processes that ended in
    between are left out (their last figures are unknown), new ones count whole."""
    if not after:
        return None
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _per_request(before: float | None, after: float | None, count: int) -> float | None:
    if before is None or after is None or not count:
        return None
    return (after - before) * 1000 / count


def _config(i: int) -> configs_pb.CallbackConfig:
    return configs_pb.CallbackConfig(
        callback_url=f"https://hooks{i}.example.com/expedia",
        api_key=f"bench-api-key-{i:04d}-" + "k" * 40,
        contact_email=f"ops{i}@example.com",
        request_timeout_seconds=30,
    )


async def _run(
    op: str, call: Call, callers: int, warmup: float, seconds: float, pids: Sequence[int]
) -> Result:
    loop_start = time.perf_counter()
    measure_from = loop_start + warmup
    stop_at = measure_from + seconds
    latencies: list[float] = []
    errors = 0
    cpu: list[tuple[float | None, float | None, dict[int, float]]] = []

    async def sample_cpu() -> None:
        await asyncio.sleep(measure_from - time.perf_counter())
        cpu.append((_cpu_seconds_of(pids), _cpu_seconds(os.getpid()), _postgres_cpu_seconds()))
        await asyncio.sleep(stop_at - time.perf_counter())
        cpu.append((_cpu_seconds_of(pids), _cpu_seconds(os.getpid()), _postgres_cpu_seconds()))

    async def caller(i: int) -> None:
        nonlocal errors
        n = 0
        while (started := time.perf_counter()) < stop_at:
            try:
                await call(i, n)
            except (grpc.aio.AioRpcError, PoolExhausted):
                errors += 1
            ended = time.perf_counter()
            n += 1
            if started >= measure_from:
                latencies.append(ended - started)

    await asyncio.gather(sample_cpu(), *(caller(i) for i in range(callers)))
    ordered = sorted(latencies)
    count = len(ordered)
    (server_before, client_before, db_before), (server_after, client_after, db_after) = cpu
    p99 = ordered[min(count - 1, int(count * 0.99))] if count else 0.0
    return Result(
        op=op,
        requests=count,
        seconds=seconds,
        rps=count / seconds,
        p50_ms=statistics.median(ordered) * 1000 if count else 0.0,
        p99_ms=p99 * 1000,
        errors=errors,
        server_cpu_ms=_per_request(server_before, server_after, count),
        client_cpu_ms=_per_request(client_before, client_after, count),
        db_cpu_ms=_per_request(0.0, _postgres_cpu_between(db_before, db_after), count),
    )


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


async def main(args: argparse.Namespace) -> None:
    """Sets up one configuration per caller, then measures every operation."""
    metadata = (("authorization", f"Bearer {args.token}"),)
    callers: int = args.concurrency
    # Several channels, each its own TCP connection, when asked: SO_REUSEPORT
    # spreads connections (not calls) across the workers of one server.
    options = [("grpc.use_local_subchannel_pool", 1)] if args.channels > 1 else []
    credentials = None
    if args.ca:
        credentials = grpc.ssl_channel_credentials(
            _read(args.ca), _read(args.key), _read(args.cert)
        )
    apis = [
        grpc.aio.secure_channel(args.api, credentials, options=options)
        if credentials
        else grpc.aio.insecure_channel(args.api, options=options)
        for _ in range(args.channels)
    ]
    echoes = [grpc.aio.insecure_channel(args.echo, options=options) for _ in range(args.channels)]
    try:
        await _measure(args, apis, echoes, metadata, callers)
    finally:
        for channel in (*apis, *echoes):
            await channel.close(None)


async def _measure(
    args: argparse.Namespace,
    apis: list[grpc.aio.Channel],
    echoes: list[grpc.aio.Channel],
    metadata: tuple[tuple[str, str], ...],
    callers: int,
) -> None:
    """Runs every operation; caller ``i`` uses channel ``i`` modulo their number."""
    config_stubs = [configs_grpc.CallbackConfigServiceStub(c) for c in apis]
    # Raw bytes both ways, like the echo server's handler.
    echo_calls = [
        c.unary_unary(ECHO_METHOD, request_serializer=None, response_deserializer=None)
        for c in echoes
    ]

    def raw(service: str, method: str) -> list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]]:
        # The measured calls send requests serialized once, ahead of time, and
        # keep the answers as bytes, exactly as the echo calls do: on a shared
        # machine the load generator's protobuf work would otherwise be CPU
        # taken from the server, charged to the API but not to the baseline.
        path = f"/{service}/{method}"
        return [
            c.unary_unary(path, request_serializer=None, response_deserializer=None) for c in apis
        ]

    configs_service = configs_pb.DESCRIPTOR.services_by_name["CallbackConfigService"].full_name
    secrets_service = secrets_pb.DESCRIPTOR.services_by_name["SecretRotationService"].full_name
    get_calls = raw(configs_service, "GetCallbackConfig")
    create_calls = raw(configs_service, "CreateCallbackConfig")
    update_calls = raw(configs_service, "UpdateCallbackConfig")
    delete_calls = raw(configs_service, "DeleteCallbackConfig")
    refresh_calls = raw(secrets_service, "RefreshSecret")
    sign_calls = raw(secrets_service, "SignNotification")
    health_calls = raw("grpc.health.v1.Health", "Check")

    def pick(stubs: Sequence[T], i: int) -> T:
        return stubs[i % len(stubs)]

    created = await asyncio.gather(
        *(
            pick(config_stubs, i).CreateCallbackConfig(
                configs_pb.CreateCallbackConfigRequest(
                    parent=f"partners/bench-{i}", callback_config=_config(i)
                ),
                metadata=metadata,
            )
            for i in range(callers)
        )
    )
    names = [c.callback_config.name for c in created]
    # Reads over many stored rows rather than the callers' own (bench.scale).
    spread: list[str] = args.spread
    rng = random.Random(7)

    def target(i: int) -> str:
        return rng.choice(spread) if spread else names[i]

    def serialized(cache: dict[str, bytes], name: str, build: Callable[[str], Message]) -> bytes:
        body = cache.get(name)
        if body is None:
            body = cache[name] = build(name).SerializeToString()
        return body

    # The echo carries what a Get carries, and the same metadata.
    echo_body = configs_pb.GetCallbackConfigRequest(name=names[0]).SerializeToString()

    async def do_echo(i: int, n: int) -> object:
        return await pick(echo_calls, i)(echo_body, metadata=metadata)

    get_bodies: dict[str, bytes] = {}

    def get_request(name: str) -> Message:
        return configs_pb.GetCallbackConfigRequest(name=name)

    async def do_get(i: int, n: int) -> object:
        body = serialized(get_bodies, target(i), get_request)
        return await pick(get_calls, i)(body, metadata=metadata)

    # Create's answers (bytes), for Delete to take the names of (topped up first).
    doomed: list[bytes] = []
    create_bodies = [
        configs_pb.CreateCallbackConfigRequest(
            parent=f"partners/bench-create-{i}", callback_config=_config(i)
        ).SerializeToString()
        for i in range(callers)
    ]

    async def do_create(i: int, n: int) -> object:
        response = await pick(create_calls, i)(create_bodies[i], metadata=metadata)
        doomed.append(response)
        return response

    def update_body(i: int, variant: int) -> bytes:
        # A new callback URL (which queues its connectivity check) and e-mail
        # address each time, as when a partner moves its endpoint.
        config = configs_pb.CallbackConfig(
            name=names[i],
            callback_url=f"https://hooks{i}-{variant}.example.com/expedia",
            contact_email=f"ops{i}-{variant}@example.com",
        )
        return configs_pb.UpdateCallbackConfigRequest(
            callback_config=config, update_mask=FieldMask(paths=["callback_url", "contact_email"])
        ).SerializeToString()

    update_bodies = [(update_body(i, 0), update_body(i, 1)) for i in range(callers)]

    async def do_update(i: int, n: int) -> object:
        return await pick(update_calls, i)(update_bodies[i][n % 2], metadata=metadata)

    delete_bodies: list[bytes] = []

    async def do_delete(i: int, n: int) -> object:
        if not delete_bodies:
            raise PoolExhausted
        return await pick(delete_calls, i)(delete_bodies.pop(), metadata=metadata)

    async def top_up(count: int) -> None:
        # Untimed: enough configurations that Delete never runs dry, and their
        # Delete requests built before the clock starts.
        async def make(i: int) -> None:
            while len(doomed) < count:
                await do_create(i, 0)

        await asyncio.gather(*(make(i) for i in range(callers)))
        for answer in doomed:
            name = configs_pb.CreateCallbackConfigResponse.FromString(answer).callback_config.name
            delete_bodies.append(
                configs_pb.DeleteCallbackConfigRequest(name=name).SerializeToString()
            )
        doomed.clear()

    # Both ways in turn: keeping the old secret and ending it.
    refresh_bodies = [
        tuple(
            secrets_pb.RefreshSecretRequest(
                name=names[i], keep_existing_secret_active=keep
            ).SerializeToString()
            for keep in (True, False)
        )
        for i in range(callers)
    ]

    async def do_refresh(i: int, n: int) -> object:
        return await pick(refresh_calls, i)(refresh_bodies[i][n % 2], metadata=metadata)

    sign_bodies: dict[str, bytes] = {}

    def sign_request(name: str) -> Message:
        return secrets_pb.SignNotificationRequest(name=name, payload=PAYLOAD)

    async def do_sign(i: int, n: int) -> object:
        body = serialized(sign_bodies, target(i), sign_request)
        return await pick(sign_calls, i)(body, metadata=metadata)

    # The hookkeeper process's floor: gRPC, the interceptor, no app code.
    health_body = health_pb2.HealthCheckRequest(service="").SerializeToString()

    async def do_health(i: int, n: int) -> object:
        return await pick(health_calls, i)(health_body, metadata=metadata)

    ops: dict[str, Call] = {
        "health": do_health,
        "echo": do_echo,
        "get": do_get,
        "create": do_create,
        "update": do_update,
        "delete": do_delete,
        "refresh": do_refresh,
        "sign": do_sign,
    }
    rates: dict[str, float] = {}
    for op in args.ops.split(","):
        if op == "delete":
            # Twice what the fastest write managed: Delete should not run dry.
            rate = max(rates.get("create", 0.0), rates.get("update", 0.0), 500.0)
            await top_up(int(rate * (args.warmup + args.seconds) * 2))
        pids = ([args.echo_pid] if args.echo_pid else []) if op == "echo" else args.api_pid
        result = await _run(op, ops[op], callers, args.warmup, args.seconds, pids or [])
        rates[op] = result.rps
        print(json.dumps(asdict(result)), flush=True)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api", required=True, help="hookkeeper server address")
    parser.add_argument("--echo", required=True, help="echo server address")
    parser.add_argument("--token", required=True, help="a service token")
    parser.add_argument(
        "--api-pid",
        type=int,
        action="append",
        help="hookkeeper server pid, for its CPU time (repeat for each worker)",
    )
    parser.add_argument("--echo-pid", type=int, help="echo server pid, for its CPU time")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--channels", type=int, default=1, help="separate connections the callers share"
    )
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument(
        "--names-file", help="configuration names (one a line) Get and Sign pick from at random"
    )
    parser.add_argument("--ops", default="echo,health,get,sign,create,update,refresh,delete,echo")
    # TLS to the API (the echo stays plaintext): the CA, and for mTLS a client pair.
    parser.add_argument("--ca", help="PEM CA of the API's certificate: call it over TLS")
    parser.add_argument("--cert", help="PEM client certificate (mTLS)")
    parser.add_argument("--key", help="PEM client key (mTLS)")
    args = parser.parse_args()
    args.spread = Path(args.names_file).read_text().split() if args.names_file else []
    return args


if __name__ == "__main__":
    asyncio.run(main(_arguments()))
