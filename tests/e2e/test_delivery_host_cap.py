"""A hanging callback host holds at most its per-host share of a dispatcher:
real processes and two real receivers, one that never answers in time and
one that answers at once; the fast one's deliveries are not held up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.delivery_harness import new_stack, partner
from tests.support.receiver import Received, Receiver

pytestmark = [pytest.mark.e2e]
PER_HOST = 2
HANGING_EVENTS = 12
FAST_EVENTS = 6


async def test_a_hanging_host_does_not_hold_up_a_fast_one(tmp_path: Path) -> None:
    release = asyncio.Event()
    hanging_now = 0
    hanging_most = 0
    hanging_ended = 0

    async def hang(_: Received) -> int:
        nonlocal hanging_now, hanging_most, hanging_ended
        hanging_now += 1
        hanging_most = max(hanging_most, hanging_now)
        try:
            await release.wait()  # until the test ends, or the attempt times out
        finally:
            hanging_now -= 1
            hanging_ended += 1
        return 200

    slow = await Receiver().start()
    slow.behaviour = hang
    fast = await Receiver().start()
    stack = new_stack(
        tmp_path,
        HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true",
        # Without the cap, the hanging host's oldest deliveries would take
        # every one of the six slots for their whole 30 s timeout.
        HOOKKEEPER_DISPATCHER_CONCURRENCY="6",
        HOOKKEEPER_DISPATCHER_BATCH_SIZE="10",
        HOOKKEEPER_DISPATCHER_PER_HOST_CONCURRENCY=str(PER_HOST),
    )
    try:
        api = stack.serve("api", HOOKKEEPER_DISPATCHER_ENABLED="false")
        stuck, fine = partner(), partner()
        stuck_config, _ = await api.config(stuck, slow.url, wait_seconds=30)
        fine_config, secret = await api.config(fine, fast.url, wait_seconds=30)
        fast.secrets = [secret]
        await api.subscribe(stuck, "GuestReviewSubmitted", stuck_config)
        await api.subscribe(fine, "GuestReviewSubmitted", fine_config)
        # The hanging host's deliveries are older: due first.
        for i in range(HANGING_EVENTS):
            await api.publish(stuck, "GuestReviewSubmitted", f"s-{i}")
        for i in range(FAST_EVENTS):
            await api.publish(fine, "GuestReviewSubmitted", f"f-{i}")
        stack.dispatcher("dispatcher")

        await fast.wait_until(lambda: len(fast.posts()) >= FAST_EVENTS, within=25)
        # Every fast delivery arrived while the hanging host still held its
        # first attempts: none of them had to end (time out) to free a slot.
        assert hanging_ended == 0
        assert hanging_now == PER_HOST
        assert hanging_most == PER_HOST
        assert all(r.signature_matches == [0] for r in fast.posts())
        await api.close()
    finally:
        release.set()
        stack.stop_all()
        await slow.stop()
        await fast.stop()
