"""Looking inside ``hookkeeper serve --workers N``: the supervisor's worker
processes, which of them listen on the port, and which one holds each
client connection (the kernel's SO_REUSEPORT choice)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable

import grpc
import psutil


def worker_pids(supervisor_pid: int) -> list[int]:
    """The supervisor's live children."""
    try:
        children = psutil.Process(supervisor_pid).children()
    except psutil.NoSuchProcess:
        return []
    return [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def _listens(pid: int, port: int) -> bool:
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


def wait_for_listening_workers(
    supervisor_pid: int, port: int, count: int, timeout: float = 90
) -> list[int]:
    """Blocks until ``count`` workers listen on ``port``; returns their pids."""
    deadline = time.monotonic() + timeout
    while True:
        pids = worker_pids(supervisor_pid)
        if len(pids) == count and all(_listens(pid, port) for pid in pids):
            return sorted(pids)
        if time.monotonic() > deadline:
            raise TimeoutError(f"expected {count} workers listening on {port}, have {pids}")
        time.sleep(0.1)


def connections_per_worker(pids: Iterable[int], port: int) -> Counter[int]:
    """How many established client connections to ``port`` each worker holds."""
    owners: Counter[int] = Counter()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        owners[pid] += sum(
            c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port for c in connections
        )
    return +owners


def separate_channels(address: str, count: int) -> list[grpc.Channel]:
    """Channels that each open their own TCP connection (grpc would otherwise
    share one subchannel between channels with the same target and options)."""
    return [
        grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(count)
    ]
