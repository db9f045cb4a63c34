"""Benchmark of ``hookkeeper serve --workers N``: 1 against 2 workers.

The same PostgreSQL database, load generator and echo baseline as
``bench.grpc_api``, but the callers spread over 16 separate connections
(``SO_REUSEPORT`` hands out connections, not calls, to the workers). Each run
measures the echo first and last; each ratio uses its own run's echo mean.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.grpc_api import CONCURRENCY, SECONDS, TOKEN, WARMUP, _start_echo, _wait_for_echo
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
from tests.support.workers import wait_for_listening_workers

CHANNELS = 16
WORKER_COUNTS = (1, 2)
OPS = os.environ.get("BENCH_WORKER_OPS", "echo,get,create,update,refresh,delete,echo")
LABELS = {
    "get": "GetCallbackConfig",
    "create": "CreateCallbackConfig",
    "update": "UpdateCallbackConfig",
    "refresh": "RefreshSecret",
    "delete": "DeleteCallbackConfig",
}


async def _load(api: str, echo: str, api_pids: list[int], echo_pid: int) -> list[dict[str, Any]]:
    pid_args = [arg for pid in api_pids for arg in ("--api-pid", str(pid))]
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
        *pid_args,
        "--echo-pid",
        str(echo_pid),
        "--concurrency",
        str(CONCURRENCY),
        "--channels",
        str(CHANNELS),
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


def _serving_pids(server: Process, port: int, workers: int) -> list[int]:
    if workers == 1:
        return [server.popen.pid]
    return wait_for_listening_workers(server.popen.pid, port, workers)


async def _run(
    env: dict[str, str], api: str, echo: str, echo_pid: int, workers: int, log: Path
) -> list[dict[str, Any]]:
    port = int(api.rsplit(":", 1)[1])
    server = start(["serve", "--workers", str(workers)], env, log)
    try:
        pids = await asyncio.to_thread(_serving_pids, server, port, workers)
        await asyncio.to_thread(wait_for_grpc_health, api)
        results = await _load(api, echo, pids, echo_pid)
    finally:
        code = server.terminate(timeout=60)
    if code != 0:
        raise RuntimeError(f"serve --workers {workers} exited with {code}: {server.output()}")
    return results


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _render(runs: dict[int, list[dict[str, Any]]]) -> Section:
    lines = [
        f"`hookkeeper serve --workers N` on PostgreSQL, {CONCURRENCY} callers over {CHANNELS} "
        f"separate connections (one load-generator process); each operation runs {SECONDS:g} s "
        f"after a {WARMUP:g} s warm-up, the echo first and last in each run. The delivery "
        "dispatcher is off (no traffic leaves 127.0.0.1). *Server CPU* sums every worker. "
        f"This machine has {os.cpu_count()} CPUs shared by the workers, PostgreSQL and the "
        "load generator, so the second worker can only use what the others leave.",
        "",
        "| workers | operation | requests/s | p50 ms | p99 ms | errors | server CPU ms/req "
        "| client CPU ms/req | PostgreSQL CPU ms/req | ratio to echo |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ratios: dict[tuple[int, str], float] = {}
    for workers, results in runs.items():
        echoes = [r for r in results if r["op"] == "echo"]
        baseline = sum(r["rps"] for r in echoes) / len(echoes)
        lines.append(f"| {workers} | echo (mean) | {baseline:.0f} | | | | | | | 1.00 |")
        for result in results:
            if result["op"] == "echo":
                continue
            ratio = result["rps"] / baseline
            ratios[(workers, result["op"])] = ratio
            lines.append(
                f"| {workers} | {LABELS[result['op']]} | {result['rps']:.0f} "
                f"| {result['p50_ms']:.2f} | {result['p99_ms']:.2f} | {result['errors']} "
                f"| {_fmt(result.get('server_cpu_ms'))} | {_fmt(result.get('client_cpu_ms'))} "
                f"| {_fmt(result.get('db_cpu_ms'))} | {ratio:.2f} |"
            )
    lines.append("")
    for op, label in LABELS.items():
        one, two = ratios.get((1, op)), ratios.get((2, op))
        if one and two:
            lines.append(f"- {label}: 2 workers at {two / one:.2f}x the ratio of 1 worker.")
    return Section("Workers: 1 against 2 (serve --workers N)", "\n".join(lines))


async def measure() -> Section:
    """Runs the load against 1, then 2 workers on one database."""
    url, database = await create_database("hookkeeper_bench")
    echo_process = None
    runs: dict[int, list[dict[str, Any]]] = {}
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
                    "HOOKKEEPER_DISPATCHER_ENABLED": "false",
                }
            )
            await asyncio.to_thread(run_cli, ["migrate"], env)
            echo_process = _start_echo(echo, tmp / "echo.log")
            await asyncio.to_thread(_wait_for_echo, echo, tmp / "echo.log")
            for workers in WORKER_COUNTS:
                log = tmp / f"server-{workers}.log"
                runs[workers] = await _run(env, api, echo, echo_process.pid, workers, log)
        finally:
            if echo_process is not None and echo_process.poll() is None:
                echo_process.terminate()
                echo_process.wait(10)
            await drop_database(database)
    return _render(runs)
