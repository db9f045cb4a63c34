"""The database's availability: which errors mean "cannot reach it", and
one log line per change, however many requests meet the outage."""

from __future__ import annotations

import logging

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from hookkeeper.service.store.availability import Availability, is_unreachable


def _wrapped(orig: BaseException, *, invalidated: bool = False) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError("SELECT 1", None, orig, connection_invalidated=invalidated)


def test_what_counts_as_unreachable() -> None:
    refused = ConnectionRefusedError(111, "refused")
    assert is_unreachable(refused)
    assert is_unreachable(TimeoutError())
    assert is_unreachable(asyncpg.CannotConnectNowError("starting up"))
    assert is_unreachable(asyncpg.AdminShutdownError("terminating connection"))
    assert is_unreachable(_wrapped(ValueError("x"), invalidated=True))
    assert is_unreachable(_wrapped(refused))
    chained = RuntimeError("outer")
    chained.__cause__ = asyncpg.ConnectionDoesNotExistError("closed mid-statement")
    assert is_unreachable(chained)
    # Wrong statements and bad data stay bugs (INTERNAL, with a traceback).
    assert not is_unreachable(_wrapped(asyncpg.UndefinedTableError("no such table")))
    assert not is_unreachable(asyncpg.CharacterNotInRepertoireError("0x00"))
    assert not is_unreachable(ValueError("bad"))
    assert not is_unreachable(asyncpg.InterfaceError("another operation is in progress"))


def test_one_line_per_change_and_listeners_told(caplog: pytest.LogCaptureFixture) -> None:
    availability = Availability()
    heard: list[bool] = []
    availability.subscribe(heard.append)
    with caplog.at_level(logging.INFO, logger="hookkeeper.database"):
        for _ in range(100):
            availability.went_down(ConnectionRefusedError(111, "refused at db.internal:5432"))
        for _ in range(100):
            availability.came_back()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("database unreachable (ConnectionRefusedError)")
    assert lines[1].startswith("database reachable again after")
    assert "db.internal" not in " ".join(lines)  # the driver's message is never logged
    assert heard == [False, True]
    assert availability.up
