"""The audit trail's pure parts: the hash chain, its verification, the
filter and the signature tally."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from hookkeeper.service.domain import audit
from hookkeeper.service.domain.audit import Draft
from hookkeeper.service.domain.errors import InvalidArgument

T0 = datetime(2026, 3, 1, 12, 0, 30, 123456, tzinfo=UTC)


def _chain(n: int) -> list[audit.AuditEvent]:
    drafts = [Draft(audit.CONFIG_CREATE, f"partners/p/callbackConfigs/{i}", "p") for i in range(n)]
    return audit.chain(None, drafts, at=T0, actor="gateway", trace_id="ab" * 16)


def test_chain_links_each_event_to_the_one_before() -> None:
    events = _chain(3)
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev_hash == audit.GENESIS
    assert events[1].prev_hash == events[0].hash
    assert events[2].prev_hash == events[1].hash
    assert len({e.hash for e in events}) == 3
    more = audit.chain((3, str(events[2].hash)), [Draft("x.y", "r")], at=T0, actor="a", trace_id="")
    assert more[0].seq == 4 and more[0].prev_hash == events[2].hash
    assert list(audit.verify([*events, *more])) == []


@pytest.mark.parametrize(
    "change",
    [
        {"actor": "someone-else"},
        {"resource": "partners/q/callbackConfigs/0"},
        {"outcome": "PERMISSION_DENIED"},
        {"count": 2},
        {"event_time": T0 + timedelta(microseconds=1)},
        {"partner_id": None},
    ],
)
def test_verify_names_an_altered_event(change: dict[str, object]) -> None:
    events = _chain(4)
    events[1] = replace(events[1], **change)  # type: ignore[arg-type]
    problems = list(audit.verify(events))
    assert [p.seq for p in problems] == [2]
    assert "altered" in str(problems[0])
    assert str(problems[0]).startswith("audit event 2:")


def test_verify_names_a_rehashed_event_through_the_next_link() -> None:
    events = _chain(4)
    forged = replace(events[1], actor="forger")
    events[1] = replace(forged, hash=audit.event_hash(forged))
    problems = list(audit.verify(events))
    assert [p.seq for p in problems] == [3]
    assert "event 2 was altered" in str(problems[0])


def test_verify_names_deleted_events() -> None:
    events = _chain(5)
    del events[1:3]
    problems = list(audit.verify(events))
    assert [p.seq for p in problems] == [4]
    assert "2..3 are missing" in str(problems[0])


def test_verify_continues_from_a_previous_batch() -> None:
    events = _chain(4)
    assert list(audit.verify(events[2:], (2, str(events[1].hash)))) == []
    assert [p.seq for p in audit.verify(events[2:], (2, "f" * 64))] == [3]


def test_filter_terms() -> None:
    found = audit.parse_filter(
        'resource = "partners/p/callbackConfigs/c" AND time >= "2026-03-01T00:00:00Z" '
        'AND time < "2026-03-02T00:00:00+01:00" AND action = "secret.refresh"'
    )
    assert found.resource == "partners/p/callbackConfigs/c"
    assert found.action == "secret.refresh"
    assert found.start_time == datetime(2026, 3, 1, tzinfo=UTC)
    assert found.end_time == datetime(2026, 3, 1, 23, tzinfo=UTC)
    assert audit.parse_filter("  ") == audit.Filter()


@pytest.mark.parametrize(
    "text",
    [
        "resource partners/p",
        'resource != "x"',
        'time >= "yesterday"',
        'time >= "2026-03-01T00:00:00"',
        'owner = "x"',
        'resource = "a" OR action = "b"',
    ],
)
def test_bad_filters_name_the_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        audit.parse_filter(text)
    assert caught.value.violations[0].field == "filter"


def test_tally_counts_per_actor_resource_and_minute() -> None:
    tally = audit.SignTally()
    minute = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    for second in (1, 2, 59):
        tally.add(
            "gateway", "partners/p/callbackConfigs/a", "p", minute + timedelta(seconds=second)
        )
    tally.add("signer", "partners/p/callbackConfigs/a", "p", minute + timedelta(seconds=3))
    tally.add("gateway", "partners/p/callbackConfigs/b", "p", minute + timedelta(seconds=4))
    tally.add("gateway", "partners/p/callbackConfigs/a", "p", minute + timedelta(seconds=61))
    # The minute still running stays in the tally.
    drained = tally.drain(before=minute + timedelta(seconds=90))
    counts = {(actor, d.resource): d.count for actor, at, d in drained}
    assert counts == {
        ("gateway", "partners/p/callbackConfigs/a"): 3,
        ("signer", "partners/p/callbackConfigs/a"): 1,
        ("gateway", "partners/p/callbackConfigs/b"): 1,
    }
    assert all(at == minute and d.action == audit.SECRET_SIGN for _, at, d in drained)
    rest = tally.drain()
    assert [(d.count, at) for _, at, d in rest] == [(1, minute + timedelta(minutes=1))]
    assert tally.drain() == []


def test_tally_restores_counts_whose_write_failed() -> None:
    tally = audit.SignTally()
    minute = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    tally.add("gateway", "partners/p/callbackConfigs/a", "p", minute)
    drained = tally.drain()
    tally.add("gateway", "partners/p/callbackConfigs/a", "p", minute + timedelta(seconds=1))
    tally.restore(drained)
    assert [d.count for _, _, d in tally.drain()] == [2]
