"""End to end: an expired secret failing until a refresh, a dispatcher killed
with SIGKILL mid-delivery, the SSRF guard of a production dispatcher, and a
dispatcher's signatures reaching the audit trail.
Real processes on one SQLite file, a real aiohttp receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from hookkeeper.service.store.database import Database
from tests.e2e.delivery_harness import eventually, new_stack, partner
from tests.support.receiver import Received, Receiver

pytestmark = pytest.mark.e2e
TEST_CLOCK = {"HOOKKEEPER_UNSAFE_TEST_CLOCK": "i-know-this-is-not-production"}
A_YEAR_AND_A_DAY = str(366 * 24 * 3600)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A fresh receiver per test."""
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


async def test_expired_secret_fails_until_a_refresh_then_succeeds(
    tmp_path: Path, receiver: Receiver
) -> None:
    stack = new_stack(tmp_path, HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true")
    try:
        # Today: the configuration and its one-year secret. No dispatcher here.
        today = stack.serve("today", HOOKKEEPER_DISPATCHER_ENABLED="false")
        who = partner()
        config, _ = await today.config(who, receiver.url)
        await today.subscribe(who, "GuestReviewSubmitted", config)
        await today.close()
        # A year and a day later (the test clock), on the same database.
        later = stack.serve(
            "later", HOOKKEEPER_UNSAFE_CLOCK_OFFSET_SECONDS=A_YEAR_AND_A_DAY, **TEST_CLOCK
        )
        await later.publish(who, "GuestReviewSubmitted", "after-expiry")

        async def failing() -> None:
            attempts = [a for a in await later.attempts(f"{who}/deliveries/-") if a.event_id]
            assert len(attempts) >= 2
            assert all("expired" in a.error and a.http_status == 0 for a in attempts)

        await eventually(failing)
        assert receiver.posts() == []  # nothing unsigned or badly signed went out
        secret = await later.refresh(config, keep=False)
        receiver.secrets = [secret]
        await receiver.wait_until(lambda: len(receiver.posts()) == 1)
        post = receiver.posts()[0]
        assert post.signature_matches == [0]
        shifted_now = datetime.now(UTC) + timedelta(seconds=float(A_YEAR_AND_A_DAY))
        sent = datetime.fromtimestamp(int(post.headers["x-eg-notification-timestamp"]) / 1000, UTC)
        assert abs(sent - shifted_now) < timedelta(minutes=1)

        async def delivered() -> None:
            attempts = [a for a in await later.attempts(f"{who}/deliveries/-") if a.event_id]
            assert attempts[-1].succeeded
            assert not any(a.succeeded for a in attempts[:-1])

        await eventually(delivered)
        await later.close()
    finally:
        assert stack.stop_all() == [0, 0], [p.output() for p in stack.processes]


async def test_sigkill_mid_delivery_then_delivered_after_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    stack = new_stack(tmp_path, HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true")
    try:
        api = stack.serve("api", HOOKKEEPER_DISPATCHER_ENABLED="false")
        first = stack.dispatcher("dispatcher-1")
        who = partner()
        config, secret = await api.config(who, receiver.url, wait_seconds=2)
        receiver.secrets = [secret]
        await api.subscribe(who, "GuestReviewSubmitted", config)
        hanging = asyncio.Event()

        async def hang_first(request: Received) -> int:
            if request.method == "POST" and len(receiver.posts()) == 1:
                hanging.set()
                await asyncio.sleep(30)  # the dispatcher dies while waiting here
            return 200

        receiver.behaviour = hang_first
        published = await api.publish(who, "GuestReviewSubmitted", "survives-sigkill")
        await asyncio.wait_for(hanging.wait(), 20)
        first.kill()  # SIGKILL mid-flight: nothing recorded, the lease remains
        assert first.popen.returncode == -9
        stack.dispatcher("dispatcher-2")
        await receiver.wait_until(lambda: len(receiver.posts()) == 2, within=30)
        one, two = receiver.posts()
        assert one.transaction_id == two.transaction_id == published.deliveries[0].transaction_id
        assert two.signature_matches == [0]

        async def recorded() -> None:
            attempts = await api.attempts(published.deliveries[0].name)
            assert [a.succeeded for a in attempts] == [True]
            # Attempt 1 was the one cut off by SIGKILL; its number stays used.
            assert attempts[0].attempt_number == 2

        await eventually(recorded)
        await api.close()
    finally:
        codes = stack.stop_all()
        assert codes[0] == 0
        assert codes[2] == 0, stack.processes[2].output()


async def test_loopback_callback_refused_unless_development_mode(
    tmp_path: Path, receiver: Receiver
) -> None:
    stack = new_stack(tmp_path)
    try:
        # Registered in development mode (which allows local URLs) ...
        dev = stack.serve(
            "dev", HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true", HOOKKEEPER_DISPATCHER_ENABLED="false"
        )
        who = partner()
        urls = {
            "literal": f"https://127.0.0.1:{receiver.port}/hook",
            "resolved": f"https://localhost:{receiver.port}/hook",
            "plain-http": receiver.url,
        }
        names = {}
        for event_type, (label, url) in zip(
            ("GuestReviewSubmitted", "ReviewsApproved", "MessageReceived"),
            urls.items(),
            strict=True,
        ):
            names[label], _ = await dev.config(who, url)
            await dev.subscribe(who, event_type, names[label])
            await dev.publish(who, event_type, f"to-{label}")
        await dev.close()
        # ... then delivered by a production dispatcher: refused at connect time.
        stack.dispatcher("production")

        async def refused() -> None:
            attempts = await api.attempts(f"{who}/deliveries/-")
            by_event = {a.event_id: a for a in attempts if a.event_id}
            assert len(by_event) == 3, attempts
            assert "loopback" in by_event["to-literal"].error
            assert "loopback" in by_event["to-resolved"].error  # after DNS resolution
            assert "plain http" in by_event["to-plain-http"].error
            assert all(a.http_status == 0 and not a.succeeded for a in by_event.values())

        api = stack.serve("api", HOOKKEEPER_DISPATCHER_ENABLED="false")
        await eventually(refused)
        assert receiver.requests == []  # not even the connectivity GETs got through
        await api.close()
    finally:
        assert stack.stop_all() == [0, 0, 0], [p.output() for p in stack.processes]


async def test_a_standalone_dispatcher_writes_its_signatures_to_the_audit_trail(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Signatures are counted in memory per minute; a dispatcher process must
    # write its own (serve writes those it makes), at the latest as it stops.
    stack = new_stack(tmp_path, HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true")
    try:
        api = stack.serve("api", HOOKKEEPER_DISPATCHER_ENABLED="false")
        who = partner()
        config, secret = await api.config(who, receiver.url)
        receiver.secrets = [secret]
        await api.subscribe(who, "GuestReviewSubmitted", config)
        for n in range(3):
            await api.publish(who, "GuestReviewSubmitted", f"signed-{n}")
        dispatcher = stack.dispatcher("dispatcher")
        await receiver.wait_until(lambda: len(receiver.posts()) == 3)
        assert all(p.signature_matches == [0] for p in receiver.posts())
        assert dispatcher.terminate() == 0
        await api.close()
    finally:
        stack.stop_all()
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'hookkeeper.db'}")
    try:
        async with database.read() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT actor, resource, partner_id, count FROM audit_events"
                        " WHERE action = 'secret.sign'"
                    )
                )
            ).all()
    finally:
        await database.close()
    assert [(r.resource, r.partner_id) for r in rows] == [(config, who.removeprefix("partners/"))]
    assert sum(int(r[3]) for r in rows) == 3
