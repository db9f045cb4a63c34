"""End to end on PostgreSQL: two ``hookkeeper dispatcher`` processes share one
queue; no notification is ever sent by both at once, and each is delivered
exactly once when the receiver always answers in time."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from hookkeeper.notifications.v1 import notification_pb2 as nt
from tests.e2e.delivery_harness import METADATA, Client, Stack, eventually, new_stack, partner
from tests.support.postgres import create_database as create_postgres_database
from tests.support.postgres import drop_database as drop_postgres_database
from tests.support.postgres import require_postgres
from tests.support.processes import Process
from tests.support.receiver import Received, Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
EVENTS = 80


async def wait_started(processes: list[Process]) -> None:
    """Waits until every dispatcher logged that it started."""
    for _ in range(300):
        if all("started" in p.output() for p in processes):
            return
        await asyncio.sleep(0.05)
    raise AssertionError([p.output() for p in processes])


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database."""
    require_postgres()
    url, name = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(name)


async def _api_subscribed(stack: Stack, receiver: Receiver) -> tuple[Client, str]:
    """serve (API only) and a new partner whose one configuration, at the
    receiver, is subscribed to GuestReviewSubmitted."""
    api = stack.serve("api", HOOKKEEPER_DISPATCHER_ENABLED="false")
    who = partner()
    config, secret = await api.config(who, receiver.url, wait_seconds=5)
    receiver.secrets = [secret]
    await api.subscribe(who, "GuestReviewSubmitted", config)
    return api, who


def _small_batches(tmp_path: Path, postgres_url: str, *, batch: int) -> Stack:
    """A stack whose dispatchers claim ``batch`` at a time, 8 in flight."""
    return new_stack(
        tmp_path,
        postgres_url,
        HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true",
        HOOKKEEPER_DISPATCHER_BATCH_SIZE=str(batch),
        HOOKKEEPER_DISPATCHER_CONCURRENCY="8",
        HOOKKEEPER_DB_POOL_SIZE="8",
    )


def _answering_after(seconds: float) -> Callable[[Received], Awaitable[int]]:
    """A receiver behaviour: 200, after ``seconds``."""

    async def slow_ok(request: Received) -> int:
        await asyncio.sleep(seconds)
        return 200

    return slow_ok


async def test_two_dispatchers_never_send_the_same_attempt_concurrently(
    tmp_path: Path, postgres_url: str
) -> None:
    receiver = await Receiver().start()
    # Small batches so both dispatchers keep coming back to the queue.
    stack = _small_batches(tmp_path, postgres_url, batch=4)
    try:
        api, who = await _api_subscribed(stack, receiver)
        receiver.behaviour = _answering_after(0.1)  # keep requests overlapping
        # One on each event loop the setting offers: they share the queue alike.
        dispatchers = [
            stack.dispatcher("dispatcher-1"),
            stack.dispatcher("dispatcher-2", HOOKKEEPER_DISPATCHER_EVENT_LOOP="asyncio"),
        ]
        # Both are polling before any work exists, so both get a share.
        await wait_started(dispatchers)
        assert " started on uvloop " in dispatchers[0].output()
        assert " started on asyncio " in dispatchers[1].output()
        # Full collections skip what start-up built (docs/delivery.md, round 6).
        assert all("start-up heap frozen: " in d.output() for d in dispatchers)
        for i in range(EVENTS):
            await api.publish(who, "GuestReviewSubmitted", f"e-{i}")
        await receiver.wait_until(lambda: len(receiver.posts()) >= EVENTS, within=60)
        await asyncio.sleep(1)  # any duplicate would arrive now

        per_transaction = Counter(r.transaction_id for r in receiver.posts())
        assert len(per_transaction) == EVENTS
        assert set(per_transaction.values()) == {1}
        assert receiver.max_concurrent_per_transaction == 1
        assert all(r.signature_matches == [0] for r in receiver.posts())

        async def all_recorded() -> None:
            attempts = [a for a in await api.attempts(f"{who}/deliveries/-") if a.event_id]
            assert len(attempts) == EVENTS
            assert all(a.succeeded and a.attempt_number == 1 for a in attempts)

        await eventually(all_recorded)
        await api.close()
        conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            rows = await conn.fetch(
                "SELECT dispatcher, count(*) AS n FROM notification_attempts "
                "WHERE dispatcher <> 'test-send' GROUP BY dispatcher"
            )
        finally:
            await conn.close()
        # Both took part (the connectivity GET is one more attempt).
        assert len(rows) == 2, rows
        assert sum(r["n"] for r in rows) == EVENTS + 1
    finally:
        codes = stack.stop_all()
        await receiver.stop()
    assert codes == [0, 0, 0], [p.output() for p in stack.processes]


async def test_a_publish_wakes_a_dispatcher_in_another_process(
    tmp_path: Path, postgres_url: str
) -> None:
    """The dispatcher polls once an hour here, so only the publishers'
    NOTIFY (LISTEN on the due channel) can make it deliver in time."""
    receiver = await Receiver().start()
    stack = new_stack(tmp_path, postgres_url, HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true")
    try:
        api, who = await _api_subscribed(stack, receiver)
        dispatcher = stack.dispatcher(
            "dispatcher", HOOKKEEPER_DISPATCHER_POLL_INTERVAL_SECONDS="3600"
        )
        await wait_started([dispatcher])
        # Its first poll (at start) found the connectivity GET, if anything;
        # from now on it sleeps until told.
        await asyncio.sleep(0.5)
        await api.publish(who, "GuestReviewSubmitted", "single")
        await receiver.wait_until(lambda: len(receiver.posts()) == 1, within=20)
        await api.notifications.BatchPublishEvents(
            nt.BatchPublishEventsRequest(
                parent=who,
                requests=[
                    nt.PublishEventRequest(
                        event_type="GuestReviewSubmitted", event_id=i, payload_json="{}"
                    )
                    for i in ("b-1", "b-2")
                ],
            ),
            metadata=METADATA,
        )
        await receiver.wait_until(lambda: len(receiver.posts()) == 3, within=20)
        await api.close()
    finally:
        codes = stack.stop_all()
        await receiver.stop()
    assert codes == [0, 0], [p.output() for p in stack.processes]


async def _event_attempts_by_dispatcher(postgres_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch(
            "SELECT a.dispatcher, count(*) AS n FROM notification_attempts a "
            "JOIN notification_deliveries d ON d.id = a.delivery_id "
            "WHERE d.kind = 'EVENT' GROUP BY a.dispatcher"
        )
    finally:
        await conn.close()
    return {r["dispatcher"]: r["n"] for r in rows}


async def _once_recorded(postgres_url: str, total: int) -> dict[str, int]:
    """The event attempts by dispatcher, once ``total`` of them are recorded."""

    async def all_recorded() -> None:
        assert sum((await _event_attempts_by_dispatcher(postgres_url)).values()) == total

    await eventually(all_recorded)
    return await _event_attempts_by_dispatcher(postgres_url)


def _posts_are(receiver: Receiver, count: int) -> bool:
    return len(receiver.posts()) == count


async def _two_workers_started(dispatcher: Process) -> None:
    for _ in range(300):
        if dispatcher.output().count(" started on ") >= 2:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(dispatcher.output())


async def test_under_a_light_load_the_first_worker_takes_every_wake_up(
    tmp_path: Path, postgres_url: str
) -> None:
    """``--workers 2``: the second copy is a standby (DispatcherOptions.standby).
    Its claim at start comes back short, so it leaves publishers' wake-ups to
    the first copy, and here it never polls again: it delivers none of the
    events published one at a time. Were both to claim on every wake-up, each
    would win about half of them (all twelve to one: 1 in 2,048)."""
    receiver = await Receiver().start()
    stack = new_stack(tmp_path, postgres_url, HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true")
    try:
        api, who = await _api_subscribed(stack, receiver)
        dispatcher = stack.dispatcher(
            "dispatcher",
            HOOKKEEPER_WORKERS="2",
            HOOKKEEPER_DISPATCHER_POLL_INTERVAL_SECONDS="3600",
        )
        await _two_workers_started(dispatcher)
        await asyncio.sleep(0.5)  # the claims at start are over
        for i in range(12):
            await api.publish(who, "GuestReviewSubmitted", f"light-{i}")
            await receiver.wait_until(functools.partial(_posts_are, receiver, i + 1), within=20)

        by_dispatcher = await _once_recorded(postgres_url, 12)
        assert len(by_dispatcher) == 1, by_dispatcher
        await api.close()
    finally:
        codes = stack.stop_all()
        await receiver.stop()
    assert codes == [0, 0], [p.output() for p in stack.processes]


async def test_a_standby_worker_joins_when_it_finds_a_backlog(
    tmp_path: Path, postgres_url: str
) -> None:
    """The standby's poll finds a sizeable batch due: it takes part again."""
    receiver = await Receiver().start()
    stack = _small_batches(tmp_path, postgres_url, batch=8)
    try:
        api, who = await _api_subscribed(stack, receiver)
        receiver.behaviour = _answering_after(0.05)  # a backlog builds up
        dispatcher = stack.dispatcher(
            "dispatcher", HOOKKEEPER_WORKERS="2", HOOKKEEPER_DISPATCHER_POLL_INTERVAL_SECONDS="0.2"
        )
        await _two_workers_started(dispatcher)
        await asyncio.sleep(0.5)
        await api.notifications.BatchPublishEvents(
            nt.BatchPublishEventsRequest(
                parent=who,
                requests=[
                    nt.PublishEventRequest(
                        event_type="GuestReviewSubmitted", event_id=f"bulk-{i}", payload_json="{}"
                    )
                    for i in range(200)
                ],
            ),
            metadata=METADATA,
        )
        await receiver.wait_until(lambda: len(receiver.posts()) >= 200, within=60)

        by_dispatcher = await _once_recorded(postgres_url, 200)
        assert len(by_dispatcher) == 2, by_dispatcher
        await api.close()
    finally:
        codes = stack.stop_all()
        await receiver.stop()
    assert codes == [0, 0], [p.output() for p in stack.processes]
