"""``hookkeeper serve --workers N`` and ``hookkeeper dispatcher --workers N``
as real processes: several workers answer on one port, SIGTERM drains them
all and the supervisor exits 0, a killed worker is replaced, and on
PostgreSQL every worker's read cache follows writes made through another."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import grpc
import psutil
import pytest
from google.protobuf import field_mask_pb2

from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.service.crypto.keyring import generate_key_entry
from tests.support.processes import Process, base_env, free_port, run_cli, start
from tests.support.sqlite import sqlite_url
from tests.support.workers import (
    connections_per_worker,
    separate_channels,
    wait_for_listening_workers,
    worker_pids,
)

pytestmark = pytest.mark.e2e

TOKEN = "workers-test-token-0123456789"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
# Enough connections that both workers get some: the kernel hashes each
# connection to a worker, so all 16 on one has probability 2 * 2**-16.
CONNECTIONS = 16


def _env(database_url: str, port: int, tmp_path: Path, **extra: str) -> dict[str, str]:
    return base_env(
        {
            "HOOKKEEPER_DATABASE_URL": database_url,
            "HOOKKEEPER_VAR_DIR": str(tmp_path / "var"),
            "HOOKKEEPER_MASTER_KEYS": generate_key_entry(),
            "HOOKKEEPER_SERVICE_TOKENS": f"tests={TOKEN}",
            "HOOKKEEPER_GRPC_LISTEN": f"127.0.0.1:{port}",
            "HOOKKEEPER_LOG_FORMAT": "json",
            **extra,
        }
    )


@contextmanager
def _supervisor(args: list[str], env: Mapping[str, str], tmp_path: Path) -> Iterator[Process]:
    process = start(args, env, tmp_path / "supervisor.log")
    try:
        yield process
    finally:
        # Only after a failure is anything still running here.
        for pid in worker_pids(process.popen.pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        process.kill()


def _logs(process: Process) -> list[dict[str, object]]:
    records = []
    for line in process.output().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def _logged(process: Process, pid: int, text: str) -> bool:
    return any(r.get("pid") == pid and text in str(r["message"]) for r in _logs(process))


def _config(i: int) -> cc.CallbackConfig:
    return cc.CallbackConfig(
        callback_url=f"https://hooks{i}.example.com/in",
        api_key=f"an-api-key-{i:04d}",
        contact_email=f"ops{i}@example.com",
    )


def _create_on_each(channels: list[grpc.Channel]) -> list[str]:
    names = []
    for i, channel in enumerate(channels):
        stub = cc_grpc.CallbackConfigServiceStub(channel)
        request = cc.CreateCallbackConfigRequest(parent="partners/acme", callback_config=_config(i))
        names.append(
            stub.CreateCallbackConfig(request, metadata=AUTH, timeout=20).callback_config.name
        )
    return names


def _get(channel: grpc.Channel, name: str) -> cc.CallbackConfig:
    stub = cc_grpc.CallbackConfigServiceStub(channel)
    request = cc.GetCallbackConfigRequest(name=name)
    return stub.GetCallbackConfig(request, metadata=AUTH, timeout=20).callback_config


def _terminate_and_check(process: Process, pids: list[int]) -> None:
    assert process.terminate(timeout=40) == 0, process.output()
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert _logged(process, pid, "stopped"), f"worker {pid} did not drain: {process.output()}"


def test_two_workers_answer_on_one_port_and_stop_together(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    port = free_port()
    env = _env(url, port, tmp_path)
    run_cli(["migrate"], env)
    with _supervisor(["serve", "--workers", "2"], env, tmp_path) as process:
        pids = wait_for_listening_workers(process.popen.pid, port, 2)
        assert process.popen.pid not in pids
        channels = separate_channels(f"127.0.0.1:{port}", CONNECTIONS)
        try:
            names = _create_on_each(channels)
            # Every worker reads what any worker wrote: one shared database.
            for i, channel in enumerate(channels):
                other = names[(i + 1) % len(names)]
                assert (
                    _get(channel, other).contact_email == f"ops{(i + 1) % len(names)}@example.com"
                )
            owners = connections_per_worker(pids, port)
        finally:
            for channel in channels:
                channel.close()
        assert set(owners) == set(pids), f"connections per worker: {dict(owners)}"
        assert sum(owners.values()) == CONNECTIONS
        _terminate_and_check(process, pids)


def test_a_killed_worker_is_replaced_and_serves(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    port = free_port()
    # The count from the environment this time, as the container image sets it.
    env = _env(url, port, tmp_path, HOOKKEEPER_WORKERS="2")
    run_cli(["migrate"], env)
    with _supervisor(["serve"], env, tmp_path) as process:
        first = wait_for_listening_workers(process.popen.pid, port, 2)
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 90
        while True:
            now = wait_for_listening_workers(process.popen.pid, port, 2)
            if first[0] not in now:
                break
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.1)
        (replacement,) = set(now) - set(first)
        assert first[1] in now  # the other worker was left alone
        assert _logged(process, process.popen.pid, "died with signal SIGKILL")
        channels = separate_channels(f"127.0.0.1:{port}", CONNECTIONS)
        try:
            _create_on_each(channels)
            owners = connections_per_worker(now, port)
        finally:
            for channel in channels:
                channel.close()
        assert owners[replacement] > 0, f"connections per worker: {dict(owners)}"
        _terminate_and_check(process, now)


@pytest.mark.postgres
def test_every_workers_read_cache_follows_writes_through_another(
    postgres_url: str, tmp_path: Path
) -> None:
    port = free_port()
    # A long cache lifetime: only the change feed can refresh an entry.
    env = _env(postgres_url, port, tmp_path, HOOKKEEPER_READ_CACHE_SECONDS="3600")
    with _supervisor(["serve", "--workers", "2"], env, tmp_path) as process:
        pids = wait_for_listening_workers(process.popen.pid, port, 2)
        channels = separate_channels(f"127.0.0.1:{port}", CONNECTIONS)
        try:
            (name, *_) = _create_on_each(channels[:1])
            for channel in channels:  # fills every worker's cache
                assert _get(channel, name).contact_email == "ops0@example.com"
            assert set(connections_per_worker(pids, port)) == set(pids)
            stub = cc_grpc.CallbackConfigServiceStub(channels[0])
            stub.UpdateCallbackConfig(
                cc.UpdateCallbackConfigRequest(
                    callback_config=cc.CallbackConfig(name=name, contact_email="new@example.com"),
                    update_mask=field_mask_pb2.FieldMask(paths=["contact_email"]),
                ),
                metadata=AUTH,
                timeout=20,
            )
            # The change feed reaches the other worker a moment after commit.
            deadline = time.monotonic() + 30
            stale = list(channels)
            while stale and time.monotonic() < deadline:
                stale = [c for c in stale if _get(c, name).contact_email != "new@example.com"]
                time.sleep(0.05)
            assert not stale, f"{len(stale)} connections still read the old row"
        finally:
            for channel in channels:
                channel.close()
        _terminate_and_check(process, pids)


def test_dispatcher_workers_start_and_stop_together(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    env = _env(url, free_port(), tmp_path)
    run_cli(["migrate"], env)
    with _supervisor(["dispatcher", "--workers", "2"], env, tmp_path) as process:
        deadline = time.monotonic() + 90
        while True:
            pids = worker_pids(process.popen.pid)
            if len(pids) == 2 and all(_logged(process, p, "started") for p in pids):
                break
            assert time.monotonic() < deadline, process.output()
            time.sleep(0.1)
        assert process.terminate(timeout=40) == 0, process.output()
        for pid in pids:
            assert _logged(process, pid, "stopped"), process.output()
