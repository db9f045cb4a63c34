"""Benchmark of the gRPC API on PostgreSQL against a bare grpc.aio echo server.

Three processes besides this one: the real ``hookkeeper serve`` on a fresh
PostgreSQL database, ``bench.echo_server`` (the baseline), and
``bench.grpc_load`` (64 concurrent callers). Each operation runs for a fixed
time after a warm-up; the echo is measured first and last and its mean is the
baseline, so drift on a noisy machine shows up instead of skewing one ratio.

BENCH_SECONDS and BENCH_WARMUP (seconds per operation) shorten or lengthen a
run; HOOKKEEPER_TEST_POSTGRES_URL chooses the PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import Section
from tests.support.postgres import create_database, drop_database
from tests.support.processes import (
    ROOT,
    Process,
    base_env,
    free_port,
    run_cli,
    start,
    wait_for_grpc_health,
)

CONCURRENCY = 64
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "1.5"))
TOKEN = "bench=" + "t" * 32
# Every operation by default; BENCH_OPS=echo,create,echo measures a few (the
# echo first and last, as always) while working on one path.
OPS = os.environ.get("BENCH_OPS", "echo,health,get,sign,create,update,refresh,delete,echo")
# (operation, label, least fraction of the echo rate)
TARGETS = [
    ("get", "GetCallbackConfig", 0.6),
    ("sign", "SignNotification", 0.6),
    ("create", "CreateCallbackConfig", 0.35),
    ("update", "UpdateCallbackConfig", 0.35),
    ("refresh", "RefreshSecret", 0.35),
    ("delete", "DeleteCallbackConfig", 0.35),
]


async def _create_database() -> tuple[str, str]:
    return await create_database("hookkeeper_bench")


def _start_echo(address: str, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "bench.echo_server", address],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def _wait_for_echo(address: str, log_path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while "ready" not in log_path.read_text():
        if time.monotonic() > deadline:
            raise TimeoutError(f"echo server at {address} did not start: {log_path.read_text()}")
        time.sleep(0.05)


async def _load(api: str, echo: str, api_pid: int, echo_pid: int) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.grpc_load",
        "--api",
        api,
        "--echo",
        echo,
        "--token",
        TOKEN.split("=", 1)[1],
        "--api-pid",
        str(api_pid),
        "--echo-pid",
        str(echo_pid),
        "--concurrency",
        str(CONCURRENCY),
        "--seconds",
        str(SECONDS),
        "--warmup",
        str(WARMUP),
        "--ops",
        OPS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed: {stderr.decode()}")
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


def _cpu(result: dict[str, Any], key: str) -> str:
    value = result.get(key)
    return "n/a" if value is None else f"{value:.3f}"


def _row(label: str, result: dict[str, Any], baseline: float) -> str:
    return (
        f"| {label} | {result['rps']:.0f} | {result['p50_ms']:.2f} | {result['p99_ms']:.2f} "
        f"| {result['errors']} | {_cpu(result, 'server_cpu_ms')} "
        f"| {_cpu(result, 'client_cpu_ms')} | {_cpu(result, 'db_cpu_ms')} "
        f"| {result['rps'] / baseline:.2f} |"
    )


def _render(results: list[dict[str, Any]]) -> Section:
    echoes = [r for r in results if r["op"] == "echo"]
    baseline = sum(r["rps"] for r in echoes) / len(echoes)
    by_op = {r["op"]: r for r in results if r["op"] != "echo"}
    lines = [
        f"{CONCURRENCY} concurrent callers (asyncio tasks over one grpc.aio channel, in "
        f"their own process); each operation runs {SECONDS:g} s after a {WARMUP:g} s "
        "warm-up. `hookkeeper serve` runs on a fresh PostgreSQL database with default "
        "settings; the baseline is a bare grpc.aio server echoing raw bytes, measured "
        "first and last (the ratio uses their mean). Server, load generator and PostgreSQL "
        f"share this machine's {os.cpu_count()} CPUs. *Server CPU* is the serving "
        "process's user + system CPU time per request during the measurement, *client "
        "CPU* the load generator's (requests/s times client CPU near 1000 ms means the "
        "client, not the server, limits the rate), *PostgreSQL CPU* that of every "
        "`postgres` process on the machine (backends, WAL writer). The "
        "health Check row is hookkeeper's own floor: the same process, its auth "
        "interceptor and protobuf, but no application code or database.",
        "",
        "| operation | requests/s | p50 ms | p99 ms | errors | server CPU ms/req "
        "| client CPU ms/req | PostgreSQL CPU ms/req | ratio to echo |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        _row("echo (baseline, first)" if i == 0 else "echo (baseline, last)", echo, baseline)
        for i, echo in enumerate(echoes)
    ]
    if "health" in by_op:
        lines.append(
            _row("grpc.health.v1 Check on hookkeeper (no target)", by_op["health"], baseline)
        )
    targets: list[tuple[str, bool]] = []
    for op, label, floor in TARGETS:
        if op not in by_op:
            continue  # not measured in this run (BENCH_OPS)
        result = by_op[op]
        ratio = result["rps"] / baseline
        lines.append(_row(label, result, baseline))
        met = ratio >= floor and not result["errors"]
        targets.append((f"{label} at least {floor:g} of the echo rate (measured {ratio:.2f})", met))
    return Section("gRPC API on PostgreSQL vs a bare grpc.aio echo", "\n".join(lines), targets)


async def measure() -> Section:
    """Starts the servers, runs the load generator, and reports the figures."""
    url, database = await _create_database()
    api_process: Process | None = None
    echo_process: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="hookkeeper-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        try:
            master_keys = await asyncio.to_thread(run_cli, ["keys", "generate"], base_env({}))
            api = f"127.0.0.1:{free_port()}"
            echo = f"127.0.0.1:{free_port()}"
            env = base_env(
                {
                    "HOOKKEEPER_DATABASE_URL": url,
                    "HOOKKEEPER_VAR_DIR": str(tmp / "var"),
                    "HOOKKEEPER_MASTER_KEYS": master_keys.strip(),
                    "HOOKKEEPER_SERVICE_TOKENS": TOKEN,
                    "HOOKKEEPER_GRPC_LISTEN": api,
                }
            )
            await asyncio.to_thread(run_cli, ["migrate"], env)
            api_process = start(["serve"], env, tmp / "server.log")
            echo_process = _start_echo(echo, tmp / "echo.log")
            await asyncio.to_thread(wait_for_grpc_health, api)
            await asyncio.to_thread(_wait_for_echo, echo, tmp / "echo.log")
            results = await _load(api, echo, api_process.popen.pid, echo_process.pid)
        finally:
            if echo_process is not None and echo_process.poll() is None:
                echo_process.terminate()
                echo_process.wait(10)
            if api_process is not None:
                api_process.terminate()
            await drop_database(database)
    return _render(results)
