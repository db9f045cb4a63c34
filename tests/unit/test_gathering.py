"""When a group leaves (store/group_commit.py ``Gathering``): at once when
idle, after a moment under load so callers on their way join it."""

from __future__ import annotations

import asyncio

from hookkeeper.service.store.group_commit import Gathering


async def test_an_idle_service_sends_at_once() -> None:
    gathering = Gathering(3600)
    # A wait of an hour would time out here.
    assert await asyncio.wait_for(gathering.take(lambda: ["alone"]), 5) == ["alone"]


async def test_under_load_the_next_group_waits_for_callers_on_their_way() -> None:
    gathering = Gathering(0.5)
    assert await gathering.take(lambda: ["a", "b"]) == ["a", "b"]  # idle before: at once
    queue: list[str] = []
    taking = asyncio.create_task(gathering.take(lambda: list(queue)))
    await asyncio.sleep(0.01)
    queue.append("late")
    assert await taking == ["late"]  # taken after the wait, not at once


async def test_after_a_lone_group_it_is_idle_again() -> None:
    gathering = Gathering(3600)
    await asyncio.wait_for(gathering.take(lambda: ["x"]), 5)
    assert await asyncio.wait_for(gathering.take(lambda: ["y"]), 5) == ["y"]
