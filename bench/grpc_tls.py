"""What TLS and mTLS cost on the gRPC API: GetCallbackConfig and
CreateCallbackConfig over plaintext, TLS and mTLS against the same PostgreSQL
database, in one run.

Three ``hookkeeper serve`` processes (plaintext, TLS, mTLS) on one database,
measured in turn, ROUNDS times over; only the one measured gets traffic. Each
round gives a ratio to that round's plaintext rate and the report shows the
median, so a machine whose load swings (other work on the same CPUs) moves
all three transports of a round together instead of skewing one ratio. 64
callers share one channel, so the handshake is paid once and the figures
show the per-message cost of encryption. Certificates are made for the run
with trustme. BENCH_TLS_SECONDS / BENCH_WARMUP set the time per operation.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import grpc
import trustme

from bench.grpc_api import CONCURRENCY, TOKEN, WARMUP
from bench.run import Section
from tests.support.postgres import create_database, drop_database
from tests.support.processes import (
    ROOT,
    base_env,
    free_port,
    run_cli,
    start,
    wait_for_grpc_health,
)

OPS = ("get", "create")
ROUNDS = int(os.environ.get("BENCH_TLS_ROUNDS", "5"))
SECONDS = float(os.environ.get("BENCH_TLS_SECONDS", "3"))
TRANSPORTS = ("plaintext", "TLS", "mTLS")
LABELS = {"get": "GetCallbackConfig", "create": "CreateCallbackConfig"}
# (least fraction of the plaintext rate) per transport; generous: the point
# is to show the cost, and to catch a transport that collapses.
FLOORS = {"TLS": 0.6, "mTLS": 0.6}


async def _load(address: str, pid: int, tls: list[str]) -> dict[str, dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.grpc_load",
        "--api",
        address,
        "--echo",
        address,  # unused: only get and create run
        "--token",
        TOKEN.split("=", 1)[1],
        "--api-pid",
        str(pid),
        "--concurrency",
        str(CONCURRENCY),
        "--seconds",
        str(SECONDS),
        "--warmup",
        str(WARMUP),
        "--ops",
        ",".join(OPS),
        *tls,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed: {stderr.decode()}")
    results = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    return {r["op"]: r for r in results}


def _render(rounds: list[dict[str, dict[str, dict[str, Any]]]]) -> Section:
    lines = [
        f"{CONCURRENCY} concurrent callers over one channel (handshake paid once), "
        f"{SECONDS:g} s per operation after {WARMUP:g} s warm-up, against three "
        "`hookkeeper serve` processes on one fresh PostgreSQL database: plaintext, TLS "
        "(server certificate) and mTLS (client certificate required), measured in turn, "
        f"{ROUNDS} rounds. Requests/s, p50 and server CPU are medians over the rounds; "
        "the ratios are medians of each round's rate (server CPU per request) over "
        "that round's plaintext one. The dispatcher is off in these servers.",
        "",
        "| operation | transport | requests/s | p50 ms | errors | server CPU ms/req "
        "| rate ratio to plaintext | CPU ratio to plaintext |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    targets: list[tuple[str, bool]] = []
    for op in OPS:
        for transport in TRANSPORTS:
            runs = [r[transport][op] for r in rounds]
            ratio = statistics.median(
                r[transport][op]["rps"] / r["plaintext"][op]["rps"] for r in rounds
            )
            errors = sum(run["errors"] for run in runs)
            cpu = statistics.median(run["server_cpu_ms"] or 0 for run in runs)
            cpu_ratio = statistics.median(
                (r[transport][op]["server_cpu_ms"] or 0)
                / (r["plaintext"][op]["server_cpu_ms"] or 1)
                for r in rounds
            )
            lines.append(
                f"| {LABELS[op]} | {transport} | {statistics.median(r['rps'] for r in runs):.0f} "
                f"| {statistics.median(r['p50_ms'] for r in runs):.2f} | {errors} "
                f"| {cpu:.3f} | {ratio:.2f} | {cpu_ratio:.2f} |"
            )
            if transport in FLOORS:
                floor = FLOORS[transport]
                targets.append(
                    (
                        f"{LABELS[op]} over {transport} at least {floor:g} of plaintext "
                        f"(measured {ratio:.2f})",
                        ratio >= floor and not errors,
                    )
                )
    return Section("gRPC over TLS and mTLS vs plaintext", "\n".join(lines), targets)


async def measure() -> Section:
    """Starts the three servers, measures them in turn, and reports the figures."""
    url, database = await create_database("hookkeeper_bench_tls")
    processes = []
    try:
        with tempfile.TemporaryDirectory(prefix="hookkeeper-bench-tls-") as tmp_dir:
            tmp = Path(tmp_dir)
            ca = trustme.CA()
            server, client = ca.issue_cert("127.0.0.1"), ca.issue_cert("bench.internal")
            files = {}
            for name, blob in [
                ("ca.pem", ca.cert_pem),
                ("server.pem", server.cert_chain_pems[0]),
                ("server.key", server.private_key_pem),
                ("client.pem", client.cert_chain_pems[0]),
                ("client.key", client.private_key_pem),
            ]:
                blob.write_to_path(str(tmp / name))
                files[name] = str(tmp / name)
            master_keys = await asyncio.to_thread(run_cli, ["keys", "generate"], base_env({}))
            env = base_env(
                {
                    "HOOKKEEPER_DATABASE_URL": url,
                    "HOOKKEEPER_VAR_DIR": str(tmp / "var"),
                    "HOOKKEEPER_MASTER_KEYS": master_keys.strip(),
                    "HOOKKEEPER_SERVICE_TOKENS": TOKEN,
                    "HOOKKEEPER_LOG_LEVEL": "WARNING",
                    "HOOKKEEPER_WORKERS": "1",
                    # Creates queue connectivity checks; no dispatcher sends
                    # them (traffic stays on 127.0.0.1, and the servers'
                    # CPU goes to the calls measured).
                    "HOOKKEEPER_DISPATCHER_ENABLED": "false",
                    # Three servers share one PostgreSQL (and its
                    # max_connections) with whatever else runs here.
                    "HOOKKEEPER_DB_POOL_SIZE": "10",
                }
            )
            await asyncio.to_thread(run_cli, ["migrate"], env)
            tls_env = {
                "HOOKKEEPER_GRPC_TLS_CERT_FILE": files["server.pem"],
                "HOOKKEEPER_GRPC_TLS_KEY_FILE": files["server.key"],
            }
            mtls_env = {**tls_env, "HOOKKEEPER_GRPC_TLS_CLIENT_CA_FILE": files["ca.pem"]}
            client_pair = ["--cert", files["client.pem"], "--key", files["client.key"]]
            plans = {
                "plaintext": ({}, [], None),
                "TLS": (
                    tls_env,
                    ["--ca", files["ca.pem"]],
                    grpc.ssl_channel_credentials(ca.cert_pem.bytes()),
                ),
                "mTLS": (
                    mtls_env,
                    ["--ca", files["ca.pem"], *client_pair],
                    grpc.ssl_channel_credentials(
                        ca.cert_pem.bytes(),
                        client.private_key_pem.bytes(),
                        client.cert_chain_pems[0].bytes(),
                    ),
                ),
            }
            servers = {}
            for transport, (extra, args, credentials) in plans.items():
                address = f"127.0.0.1:{free_port()}"
                process = start(
                    ["serve"],
                    {**env, **extra, "HOOKKEEPER_GRPC_LISTEN": address},
                    tmp / f"server-{transport}.log",
                )
                processes.append(process)
                await asyncio.to_thread(wait_for_grpc_health, address, 30, credentials)
                servers[transport] = (address, process.popen.pid, args)
            rounds = []
            for _ in range(ROUNDS):
                results = {}
                for transport, (address, pid, args) in servers.items():
                    results[transport] = await _load(address, pid, args)
                rounds.append(results)
    finally:
        for process in processes:
            process.terminate()
        await drop_database(database)
    return _render(rounds)
