"""The delivery use cases and queue on SQLite and PostgreSQL, in-process:
idempotent publish, disjoint claims, lease fencing, cancellation on delete,
and retries scheduled per policy (a fake sender stands in only for the HTTP
hop, which the end-to-end tests cover for real)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import text

from hookkeeper.service.app.callback_configs import CallbackConfigs
from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.app.delivering import Deliverer, settled
from hookkeeper.service.app.notifications import Notifications
from hookkeeper.service.app.sending import Answer
from hookkeeper.service.crypto.keyring import Keyring, generate_key_entry
from hookkeeper.service.delivery.http import Sender
from hookkeeper.service.domain.callback_config import ConfigFields
from hookkeeper.service.domain.deliveries import DeliveryKind, DeliveryState
from hookkeeper.service.domain.delivery_names import DeliveryName
from hookkeeper.service.domain.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from hookkeeper.service.store import attempts, delivery_queue, gauges
from hookkeeper.service.store import endpoint_health as endpoint_store
from hookkeeper.service.store.database import Database
from hookkeeper.service.store.records import (
    ClaimedDelivery,
)
from tests.support.clock import FakeClock


class ScriptedSender(Sender):
    """Answers from a script instead of the network."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__(allow_insecure=True)
        self.statuses = statuses
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    async def request(
        self, method: str, url: str, *, headers: object, body: bytes | None, timeout_seconds: float
    ) -> Answer:
        self.calls.append((method, url, dict(headers)))  # type: ignore[call-overload]
        status = self.statuses.pop(0) if self.statuses else 200
        return Answer(status, 3, "" if status < 300 else f"the callback answered HTTP {status}")


@pytest.fixture
def ctx(app_context: AppContext) -> AppContext:
    """Development policy: local URLs allowed."""
    return AppContext(
        app_context.database,
        app_context.keyring,
        Policy(allow_insecure_callbacks=True),
        app_context.clock,
    )


async def _config(ctx: AppContext, partner: str) -> str:
    created = await CallbackConfigs(ctx).create(
        partner,
        ConfigFields("http://127.0.0.1:9/hook", "key", "ops@example.com", 5),
    )
    return str(created.config.name)


async def _claim(ctx: AppContext, limit: int = 10) -> list[ClaimedDelivery]:
    async with ctx.database.write() as conn:
        return await delivery_queue.claim_due(
            conn,
            now=ctx.clock(),
            limit=limit,
            owner="t",
            token=str(uuid.uuid4()),
            lease_margin=timedelta(seconds=1),
        )


async def _claim_plain(
    pg: asyncpg.Connection, now: datetime, limit: int
) -> tuple[list[ClaimedDelivery], int]:
    """claim_plain as the dispatcher calls it, for a test owner."""
    return await delivery_queue.claim_plain(
        pg,
        now=now,
        limit=limit,
        owner="t",
        token=str(uuid.uuid4()),
        lease_margin=timedelta(seconds=1),
    )


async def test_publish_is_idempotent_and_fans_out_to_the_subscription(ctx: AppContext) -> None:
    notifications = Notifications(ctx, ScriptedSender([]))
    config = await _config(ctx, "p1")
    await notifications.subscribe("p1", "GuestReviewSubmitted", config)
    with pytest.raises(AlreadyExists):
        await notifications.subscribe("p1", "GuestReviewSubmitted", config)
    first = await notifications.publish("p1", "GuestReviewSubmitted", "e1", '{"a":1}')
    second = await notifications.publish("p1", "GuestReviewSubmitted", "e1", '{"a":2}')
    assert len(first.deliveries) == 1
    assert second.duplicate
    assert [d.id for d in second.deliveries] == [first.deliveries[0].id]
    with pytest.raises(InvalidArgument) as caught:
        await notifications.publish("p1", "Nope", "", "[]")
    assert {v.field for v in caught.value.violations} == {"event_type", "event_id", "payload_json"}


async def test_claims_are_disjoint_and_leases_fence_late_writers(
    ctx: AppContext, clock: FakeClock
) -> None:
    notifications = Notifications(ctx, ScriptedSender([]))
    config = await _config(ctx, "p2")
    await notifications.subscribe("p2", "GuestReviewSubmitted", config)
    for i in range(6):
        await notifications.publish("p2", "GuestReviewSubmitted", f"e{i}", "{}")
    # The connectivity check of the new URL is in the queue too: 7 rows.
    batches = await asyncio.gather(*[_claim(ctx, 3) for _ in range(4)])
    ids = [c.delivery.id for batch in batches for c in batch]
    assert len(ids) == 7
    assert len(set(ids)) == 7
    assert await _claim(ctx) == []  # all leased
    clock.advance(timedelta(seconds=7))  # the 5 s timeout + 1 s margin ran out
    async with ctx.database.read() as conn:
        assert await gauges.delivery_queue(conn, clock()) == (7, 7.0)
    again = await _claim(ctx)
    assert len(again) == 7
    stale = batches[0][0]
    async with ctx.database.write() as conn:
        await delivery_queue.settle_many(
            conn,
            [
                {
                    "b_id": stale.delivery.id,
                    "b_token": stale.lease_token,  # the expired lease's token
                    "b_state": DeliveryState.DELIVERED,
                    "b_round_failures": 0,
                    "b_next": None,
                    "b_error": None,
                    "b_now": clock(),
                }
            ],
        )
        rows = await delivery_queue.count_by_state(conn)
    assert rows == {DeliveryState.PENDING: 7}


async def test_failures_retry_per_policy_then_fail(ctx: AppContext, clock: FakeClock) -> None:
    sender = ScriptedSender([500] * 100)
    notifications = Notifications(ctx, sender)
    config = await _config(ctx, "p3")
    await notifications.subscribe("p3", "MessageReceived", config)
    await notifications.publish("p3", "MessageReceived", "m", "{}")
    deliverer = Deliverer(ctx, sender, scale=1.0, owner="t")
    outcomes = 0
    for _ in range(40):
        claimed = await _claim(ctx)
        for item in claimed:
            outcome = await deliverer.attempt(item)
            outcomes += 1
            async with ctx.database.write() as conn:
                await attempts.insert_attempts(conn, [outcome.attempt])
                await delivery_queue.settle_many(
                    conn,
                    [
                        {
                            "b_id": item.delivery.id,
                            "b_token": item.lease_token,
                            "b_state": outcome.settlement.state,
                            "b_round_failures": outcome.settlement.round_failures,
                            "b_next": outcome.settlement.next_attempt_time,
                            "b_error": outcome.settlement.last_error,
                            "b_now": clock(),
                        }
                    ],
                )
        clock.advance(timedelta(hours=1))
    # One connectivity GET, then the first attempt and 24 hourly retries.
    assert outcomes == 1 + 25
    async with ctx.database.read() as conn:
        assert await delivery_queue.count_by_state(conn) == {DeliveryState.FAILED: 2}
    methods = [method for method, _, _ in sender.calls]
    assert (methods.count("GET"), methods.count("POST")) == (1, 25)


async def test_deleting_a_configuration_cancels_its_pending_deliveries(ctx: AppContext) -> None:
    notifications = Notifications(ctx, ScriptedSender([]))
    config = await _config(ctx, "p4")
    await notifications.subscribe("p4", "PropertyStatusChanged", config)
    await notifications.publish("p4", "PropertyStatusChanged", "x", "{}")
    from hookkeeper.service.domain.names import parse_config

    await CallbackConfigs(ctx).delete(parse_config(config))
    async with ctx.database.read() as conn:
        assert await delivery_queue.count_by_state(conn) == {DeliveryState.CANCELLED: 2}
    assert await notifications.subscriptions("p4") == []
    with pytest.raises(NotFound):
        await notifications.send_test(parse_config(config), "PropertyStatusChanged", "{}")


async def test_changing_the_callback_url_queues_one_connectivity_check(ctx: AppContext) -> None:
    from hookkeeper.service.domain.names import parse_config

    name = parse_config(await _config(ctx, "p5"))
    configs = CallbackConfigs(ctx)
    same = ConfigFields(callback_url="http://127.0.0.1:9/hook")
    await configs.update(name, same, ["callback_url"])  # unchanged: nothing queued
    other = ConfigFields(callback_url="http://127.0.0.1:9/other")
    await configs.update(name, other, ["callback_url"])
    await configs.update(name, ConfigFields(contact_email="x@example.com"), ["contact_email"])
    claimed = await _claim(ctx)
    checks = [c for c in claimed if c.delivery.kind == DeliveryKind.CONNECTIVITY_CHECK]
    assert len(checks) == len(claimed) == 2  # the one of create and the one of the change


async def test_credentials_sealed_under_a_lost_key_fail_the_attempt_visibly(
    ctx: AppContext,
) -> None:
    sender = ScriptedSender([])
    notifications = Notifications(ctx, sender)
    config = await _config(ctx, "p9")
    await notifications.subscribe("p9", "MessageReceived", config)
    await notifications.publish("p9", "MessageReceived", "m", "{}")
    # The operator dropped the key the rows were sealed under.
    other_keyring = Keyring.parse(generate_key_entry())
    lost = AppContext(ctx.database, other_keyring, ctx.policy, ctx.clock)
    deliverer = Deliverer(lost, sender, scale=1.0, owner="t")
    outcomes = [await deliverer.attempt(item) for item in await _claim(ctx)]
    assert len(outcomes) == 2  # the connectivity GET and the event
    for outcome in outcomes:
        assert not outcome.attempt.succeeded
        assert outcome.attempt.error.startswith("cannot open stored credentials: key ")
    states = {o.claimed.delivery.kind: o.settlement.state for o in outcomes}
    # The event is retried per its policy; a connectivity check never is.
    assert states == {
        DeliveryKind.EVENT: DeliveryState.PENDING,
        DeliveryKind.CONNECTIVITY_CHECK: DeliveryState.FAILED,
    }
    assert sender.calls == []  # nothing was sent without its credentials


@pytest.fixture
async def pg_ctx(
    postgres_url: str, keyring: Keyring, clock: FakeClock
) -> AsyncIterator[AppContext]:
    """``ctx`` on PostgreSQL only (no SQLite variant to skip: the
    one-statement paths exist only there)."""
    database = Database(postgres_url, pool_size=5)
    yield AppContext(database, keyring, Policy(allow_insecure_callbacks=True), clock)
    await database.close()


async def test_one_statement_claim_and_record_on_postgresql(
    pg_ctx: AppContext, clock: FakeClock
) -> None:
    ctx = pg_ctx
    notifications = Notifications(ctx, ScriptedSender([]))
    config = await _config(ctx, "p8")
    held = await _config(ctx, "p9")
    await notifications.subscribe("p8", "GuestReviewSubmitted", config)
    await notifications.subscribe("p9", "GuestReviewSubmitted", held)
    for i in range(6):
        await notifications.publish("p8", "GuestReviewSubmitted", f"e{i}", '{"n":1}')
    await notifications.publish("p9", "GuestReviewSubmitted", "h", "{}")
    async with ctx.database.write() as conn:
        # A Retry-After hold: p9's rows are behind a gate, left to claim_due.
        held_id = held.rsplit("/", 1)[1]
        await endpoint_store.lock_health(conn, held_id)
        await endpoint_store.write_health(
            conn, held_id, {"hold_until": clock() + timedelta(hours=1)}
        )

    async def plain(limit: int) -> tuple[list[ClaimedDelivery], int]:
        async with ctx.database.driver() as pg:
            return await _claim_plain(pg, clock(), limit)

    batches = await asyncio.gather(*[plain(3) for _ in range(5)])
    claimed = [c for batch, _ in batches for c in batch]
    # p8's GET and six events, each once; p9's GET and event are gated.
    assert len({c.delivery.id for c in claimed}) == len(claimed) == 7
    # Left alone, not leased: every claim that meets them says so.
    assert await plain(10) == ([], 2)
    assert all(c.target is not None and c.secrets for c in claimed)
    assert sorted(c.event.event_id for c in claimed if c.event) == [f"e{i}" for i in range(6)]
    assert all(c.delivery.attempt_count == 1 for c in claimed)
    deliverer = Deliverer(ctx, ScriptedSender([]), scale=1.0, owner="t")
    outcomes = [await deliverer.attempt(c) for c in claimed]
    assert all(o.attempt.succeeded for o in outcomes)
    first, late = outcomes[:4], outcomes[4:]
    async with ctx.database.driver() as pg:
        await attempts.record_batch(
            pg,
            [o.attempt for o in first],
            [settled(o) for o in first],
            [held_id],
            clock(),
        )
    clock.advance(timedelta(seconds=7))  # the other leases ran out: claimed again
    again, _ = await plain(10)
    assert {c.delivery.id for c in again} == {o.claimed.delivery.id for o in late}
    async with ctx.database.driver() as pg:
        # The expired leases' outcomes are logged but fenced off the rows.
        await attempts.record_batch(
            pg,
            [o.attempt for o in late],
            [
                attempts.Settled(o.claimed.lease_token, DeliveryState.DELIVERED, 0, None, None)
                for o in late
            ],
            [],
            clock(),
        )
    async with ctx.database.read() as conn:
        states = await delivery_queue.count_by_state(conn)
    assert states == {DeliveryState.DELIVERED: 4, DeliveryState.PENDING: 5}
    logged = await notifications.attempts(DeliveryName("p8", None), "", 50, "")
    assert len(logged[0]) == 7


async def test_the_claim_is_a_heap_only_update_on_postgresql(
    pg_ctx: AppContext, clock: FakeClock
) -> None:
    """The lease writes no indexed column and the pages keep room for it, so
    PostgreSQL updates every claimed row in place (HOT) and adds no entry to
    any index: what keeps the claim's cost flat as the table grows. Enough
    rows that full pages (the default fillfactor) would force most claimed
    rows' new versions onto other pages."""
    async with pg_ctx.database.write() as conn:
        await conn.execute(
            text(
                """
                INSERT INTO notification_deliveries
                    (id, partner_id, kind, event_pk, callback_config_id, transaction_id, state,
                     attempt_count, round_failures, next_attempt_time, create_time, update_time)
                SELECT md5(i::text), 'p', 'CONNECTIVITY_CHECK', NULL, 'cfg-' || (i % 7),
                       md5('t' || i::text), 'PENDING', 0, 0,
                       CAST(:now AS timestamptz) - (1000 - i) * interval '1 millisecond',
                       CAST(:now AS timestamptz), CAST(:now AS timestamptz)
                FROM generate_series(1, 300) AS i
                """
            ),
            {"now": clock()},
        )

    async with pg_ctx.database.driver() as pg, pg.transaction():
        claimed, gated = await _claim_plain(pg, clock(), 100)
        updated, hot = await pg.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
            "WHERE relname = 'notification_deliveries'"
        )
    assert (len(claimed), gated) == (100, 0)
    assert (updated, hot) == (100, 100)
    # Leased rows keep their due time and stay out of the next claim.
    async with pg_ctx.database.driver() as pg:
        rest, _ = await _claim_plain(pg, clock(), 300)
    assert len(rest) == 200
    assert not {c.delivery.id for c in rest} & {c.delivery.id for c in claimed}


async def test_a_driver_connection_lost_under_a_statement_is_an_outage(
    pg_ctx: AppContext,
) -> None:
    """``Database.driver`` (the dispatcher's claim and record): a failure on a
    connection that died is reported as the database being unreachable (not
    a bug with a traceback), and that connection is never handed out again."""
    database = pg_ctx.database

    async def lost() -> None:
        async with database.driver() as pg:
            await pg.close()  # as the server going away would leave it
            raise RuntimeError("another operation is in progress")

    async def refused() -> None:
        async with database.driver() as pg:
            await pg.fetch("SELECT * FROM no_such_table")

    with pytest.raises(Unavailable):
        await lost()
    assert not database.availability.up
    async with database.driver() as pg:
        assert await pg.fetchval("SELECT 1") == 1
    assert database.availability.up
    # A statement the server refuses leaves the connection pooled and usable.
    with pytest.raises(asyncpg.UndefinedTableError):
        await refused()
    async with database.driver() as pg:
        assert await pg.fetchval("SELECT 2") == 2


async def _claim_plan(pg: asyncpg.Connection, *, analyzed: bool, now: datetime) -> str:
    """The claim's generic plan on ``pg`` over a queue of 50,000 due rows,
    with or without the table's statistics."""
    await pg.execute(
        """
        INSERT INTO notification_deliveries
            (id, partner_id, kind, event_pk, callback_config_id, transaction_id, state,
             attempt_count, round_failures, next_attempt_time, create_time, update_time)
        SELECT md5(i::text), 'p', 'CONNECTIVITY_CHECK', NULL, 'cfg-' || (i % 100),
               md5('t' || i::text), 'PENDING', 0, 0,
               $1::timestamptz - (50000 - i) * interval '1 millisecond', $1, $1
        FROM generate_series(1, 50000) AS i
        """,
        now,
    )
    if analyzed:
        await pg.execute("ANALYZE notification_deliveries")
    await pg.execute(
        "PREPARE claim(timestamptz, int, text[], text, text, text, interval) AS "
        + delivery_queue.claim_statement(100)
    )
    try:
        async with pg.transaction():
            await pg.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            rows = await pg.fetch(
                "EXPLAIN EXECUTE claim(now(), 100, '{}', 'o', 't', 'DISABLED', '1 minute')"
            )
    finally:
        await pg.execute("DEALLOCATE claim")
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize("analyzed", [True, False], ids=["analyzed", "no-statistics"])
async def test_the_claims_generic_plan_scans_the_due_index_on_postgresql(
    pg_ctx: AppContext, clock: FakeClock, analyzed: bool
) -> None:
    """PostgreSQL settles on a prepared statement's generic plan after five
    runs only if that plan is not costlier than the planned-each-time ones:
    the claim's must be able to use the partial due index (a literal state,
    a constant limit), or every claim on a long queue pays ~0.8 ms of
    planning (docs/delivery.md, round 4). And on the queue connections that
    plan reads the due index in order even before ANALYZE has seen a bulk
    publish: planned from no statistics it was a bitmap scan and a sort of
    every due row (round 6)."""
    async with pg_ctx.database.driver() as pg:
        plan = await _claim_plan(pg, analyzed=analyzed, now=clock())
    assert "Index Scan using ix_notification_deliveries_due" in plan, plan
    assert "Seq Scan on notification_deliveries" not in plan, plan
    assert "Bitmap" not in plan, plan
    assert "Sort Key: d.next_attempt_time" not in plan, plan


async def test_queue_connections_keep_their_planner_settings_to_themselves(
    pg_ctx: AppContext,
) -> None:
    """The planner settings of the queue connections never reach the pool
    that serves every other statement."""
    async with pg_ctx.database.driver() as pg:
        assert await pg.fetchval("SHOW enable_bitmapscan") == "off"
        assert await pg.fetchval("SHOW enable_seqscan") == "off"
    async with pg_ctx.database.read() as conn:
        assert (await conn.execute(text("SHOW enable_bitmapscan"))).scalar() == "on"
        assert (await conn.execute(text("SHOW enable_seqscan"))).scalar() == "on"


async def test_the_records_generic_plan_looks_each_row_up_on_postgresql(
    pg_ctx: AppContext, clock: FakeClock
) -> None:
    """The record finds each outcome's row by its key and updates that
    version by ctid, whatever the statistics say: on a queue never analyzed,
    its generic plan used to scan every pending row once per outcome (the
    settle's join planned for a table of one row; docs/delivery.md, round 6)."""
    async with pg_ctx.database.driver() as pg:
        await pg.execute(
            """
            INSERT INTO notification_deliveries
                (id, partner_id, kind, event_pk, callback_config_id, transaction_id, state,
                 attempt_count, round_failures, next_attempt_time, create_time, update_time,
                 lease_token)
            SELECT md5(i::text), 'p', 'CONNECTIVITY_CHECK', NULL, 'cfg-' || (i % 7),
                   md5('t' || i::text), 'PENDING', 1, 0, $1, $1, $1, 'token'
            FROM generate_series(1, 3000) AS i
            """,
            clock(),
        )
        await pg.execute(
            "PREPARE record(text[], text[], text[], int[], timestamptz[], int[], int[], "
            "bool[], text[], text[], text[], int[], timestamptz[], text[], text, "
            "timestamptz, text, text[]) AS " + attempts._RECORD_PG
        )
        ids = "ARRAY[" + ",".join(f"md5('{i}')" for i in range(1, 51)) + "]"

        def fill(value: str) -> str:
            return f"array_fill({value}, ARRAY[50])"

        arguments = ", ".join(
            [
                ids,
                ids,
                fill("'p'::text"),
                fill("1"),
                fill("now()"),
                fill("1"),
                fill("200"),
                fill("true"),
                fill("''::text"),
                fill("'token'::text"),
                fill("'DELIVERED'::text"),
                fill("0"),
                fill("NULL::timestamptz"),
                fill("NULL::text"),
                "'d'",
                "now()",
                "'PENDING'",
                "'{}'",
            ]
        )
        try:
            async with pg.transaction():
                await pg.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                rows = await pg.fetch(f"EXPLAIN EXECUTE record({arguments})")
        finally:
            await pg.execute("DEALLOCATE record")
    plan = "\n".join(r[0] for r in rows)
    assert "Index Scan using pk_notification_deliveries" in plan, plan
    assert "Tid Scan on notification_deliveries" in plan, plan
    assert "ix_notification_deliveries_config_state" not in plan, plan
    assert "Seq Scan on notification_deliveries" not in plan, plan
