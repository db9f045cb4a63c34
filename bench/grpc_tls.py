"""What TLS and mTLS cost on the gRPC API: GetCallbackConfig and
CreateCallbackConfig over plaintext, TLS and mTLS against the same PostgreSQL
database, in one run.

One ``hookkeeper serve`` at a time (so they never compete for the CPUs):
plaintext, TLS, mTLS, plaintext again; the plaintext rate is the mean of the
first and last runs (drift on a noisy machine shows instead of skewing a
ratio). 64 callers share one channel per run, so the handshake is paid once
and the figures show the per-message cost of encryption. Certificates are
made for the run with trustme. BENCH_SECONDS / BENCH_WARMUP as in grpc_api.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import grpc
import trustme

from bench.grpc_api import CONCURRENCY, SECONDS, TOKEN, WARMUP
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


def _row(label: str, op: str, result: dict[str, Any], baseline: float) -> str:
    return (
        f"| {LABELS[op]} | {label} | {result['rps']:.0f} | {result['p50_ms']:.2f} "
        f"| {result['p99_ms']:.2f} | {result['errors']} "
        f"| {result['server_cpu_ms'] or 0:.3f} | {result['rps'] / baseline:.2f} |"
    )


def _render(runs: list[tuple[str, dict[str, dict[str, Any]]]]) -> Section:
    plain = [results for label, results in runs if label == "plaintext"]
    baseline = {op: sum(r[op]["rps"] for r in plain) / len(plain) for op in OPS}
    lines = [
        f"{CONCURRENCY} concurrent callers over one channel (handshake paid once), "
        f"{SECONDS:g} s per operation after {WARMUP:g} s warm-up, `hookkeeper serve` on a "
        "fresh PostgreSQL database; one server process at a time on the same database: "
        "plaintext, TLS (server certificate), mTLS (client certificate required), "
        "plaintext again. The ratio is against the mean of the two plaintext runs.",
        "",
        "| operation | transport | requests/s | p50 ms | p99 ms | errors "
        "| server CPU ms/req | ratio to plaintext |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    targets: list[tuple[str, bool]] = []
    for op in OPS:
        for label, results in runs:
            lines.append(_row(label, op, results[op], baseline[op]))
        for label, floor in FLOORS.items():
            result = next(r for name, r in runs if name == label)[op]
            ratio = result["rps"] / baseline[op]
            met = ratio >= floor and not result["errors"]
            targets.append(
                (
                    f"{LABELS[op]} over {label} at least {floor:g} of plaintext "
                    f"(measured {ratio:.2f})",
                    met,
                )
            )
    return Section("gRPC over TLS and mTLS vs plaintext", "\n".join(lines), targets)


async def measure() -> Section:
    """Runs the four servers one after the other and reports the figures."""
    url, database = await create_database("hookkeeper_bench_tls")
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
                }
            )
            await asyncio.to_thread(run_cli, ["migrate"], env)
            tls_env = {
                "HOOKKEEPER_GRPC_TLS_CERT_FILE": files["server.pem"],
                "HOOKKEEPER_GRPC_TLS_KEY_FILE": files["server.key"],
            }
            mtls_env = {**tls_env, "HOOKKEEPER_GRPC_TLS_CLIENT_CA_FILE": files["ca.pem"]}
            client_pair = ["--cert", files["client.pem"], "--key", files["client.key"]]
            plans: list[tuple[str, dict[str, str], list[str]]] = [
                ("plaintext", {}, []),
                ("TLS", tls_env, ["--ca", files["ca.pem"]]),
                ("mTLS", mtls_env, ["--ca", files["ca.pem"], *client_pair]),
                ("plaintext", {}, []),
            ]
            runs = []
            for i, (label, extra, args) in enumerate(plans):
                address = f"127.0.0.1:{free_port()}"
                process = start(
                    ["serve"],
                    {**env, **extra, "HOOKKEEPER_GRPC_LISTEN": address},
                    tmp / f"server-{i}.log",
                )
                credentials = None
                if args:
                    mutual = "HOOKKEEPER_GRPC_TLS_CLIENT_CA_FILE" in extra
                    credentials = grpc.ssl_channel_credentials(
                        ca.cert_pem.bytes(),
                        client.private_key_pem.bytes() if mutual else None,
                        client.cert_chain_pems[0].bytes() if mutual else None,
                    )
                try:
                    await asyncio.to_thread(wait_for_grpc_health, address, 20, credentials)
                    runs.append((label, await _load(address, process.popen.pid, args)))
                finally:
                    process.terminate()
    finally:
        await drop_database(database)
    return _render(runs)
