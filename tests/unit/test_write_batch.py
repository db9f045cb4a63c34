"""The one statement a unit of work's queued writes become on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from hookkeeper.service.store import audit, batch, delivery_queue
from hookkeeper.service.store import callback_configs as configs

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_writes_become_ctes_and_notifications_the_final_select() -> None:
    queued = batch.WriteBatch()
    queued.parts.append((configs._DELETE_SECRET, {"b_secret_id": "s-1"}))
    queued.parts.append(
        (configs._UPDATE_CONFIG, {"b_config_id": "c-1", "update_time": NOW, "state": "ACTIVE"})
    )
    queued.notices.append(("channel", "c-1"))
    sql, values = batch.render(queued)
    assert sql.startswith("WITH w0 AS (DELETE FROM callback_secrets")
    assert ", w1 AS (UPDATE callback_configs SET " in sql
    assert sql.endswith("SELECT pg_notify($5, $6)")
    # Every placeholder numbered once, values in placeholder order.
    assert [f"${i}" in sql for i in range(1, 7)] == [True] * 6
    assert "$7" not in sql
    assert values[0] == "s-1"
    assert sorted(map(str, values[1:4])) == sorted(["ACTIVE", str(NOW), "c-1"])
    assert values[4:] == ["channel", "c-1"]


def test_a_batch_of_notifications_alone_selects_them() -> None:
    queued = batch.WriteBatch()
    queued.notices.append(("channel", "c-1"))
    assert batch.render(queued) == ("SELECT pg_notify($1, $2)", ["channel", "c-1"])


def test_an_empty_batch_is_falsy_and_one_with_a_write_is_not() -> None:
    queued = batch.WriteBatch()
    assert not queued
    row = {"event_time": NOW, "actor": "a", "action": "x", "resource": "r", "partner_id": None}
    queued.parts.append((audit._INSERT, row))
    assert queued
    sql, values = batch.render(queued)
    assert sql.startswith("WITH w0 AS (INSERT INTO audit_events (")
    assert values == [NOW, "a", "x", "r", None] or sorted(map(str, values)) == sorted(
        map(str, [NOW, "a", "x", "r", None])
    )


def test_values_fixed_in_the_statement_are_bound_too() -> None:
    queued = batch.WriteBatch()
    params = {"b_config_id": "c-1", "b_now": NOW}
    queued.parts.append((delivery_queue._CANCEL_FOR_CONFIG, params))
    sql, values = batch.render(queued)
    assert sql.startswith("WITH w0 AS (UPDATE notification_deliveries SET state=$1")
    assert values[0] == "CANCELLED" and "the callback configuration was deleted" in values
    assert "c-1" in values and "PENDING" in values and NOW in values
