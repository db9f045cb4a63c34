"""Identifiers in bulk.

``str(uuid.uuid4())`` costs about 2 µs (a ``UUID`` object, its checks, its
formatting); publishing a batch of 1,000 events needs several ids per event,
so that alone was a tenth of the server's CPU per event. These functions draw
all the randomness of a batch with one ``os.urandom`` call (the operating
system's CSPRNG) and format the canonical text directly.

Two kinds:

- ``uuid4_strings``: RFC 9562 version 4, all random. For transactionIds,
  which partners see and no index is built on.
- ``uuid7_strings``: RFC 9562 version 7, a 48-bit Unix time in milliseconds
  then 74 random bits. For the primary keys of the tables written per event
  (events, deliveries, attempts): PostgreSQL's B-trees then take each new key
  at their right edge, in pages already in memory, instead of at a random
  leaf. With random keys, every insert touched a random page of every such
  index (a page split, a full-page image in the WAL once per checkpoint), and
  that cost grows with the table. The time they reveal, to the millisecond,
  is their resource's ``create_time``, which the API shows anyway; the 74
  random bits keep them unguessable.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
# The variant bits of byte 8 are 10xx: the first hex digit of the fourth
# group is one of 8, 9, a, b (its two low bits kept from the random nibble).
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def uuid4_strings(count: int) -> list[str]:
    """``count`` random version 4 UUIDs in canonical lower-case text."""
    raw = os.urandom(16 * count).hex()
    ids = []
    for start in range(0, 32 * count, 32):
        h = raw[start : start + 32]
        ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}")
    return ids


def uuid4_string() -> str:
    """One random version 4 UUID in canonical text."""
    return uuid4_strings(1)[0]


def unix_millis(moment: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware ``moment`` (exact: no
    float in between)."""
    return (moment - _EPOCH) // _MILLISECOND


def uuid7_prefix(unix_ms: int) -> str:
    """The first 15 characters of every version 7 UUID of millisecond
    ``unix_ms``: the time's 12 hex digits, hyphenated, and the version digit.
    PostgreSQL completes it with 21 random characters of its own
    (``delivery_queue.publish_many``)."""
    t = f"{unix_ms & 0xFFFF_FFFF_FFFF:012x}"
    return f"{t[:8]}-{t[8:]}-7"


def uuid7_strings(count: int, unix_ms: int | None = None) -> list[str]:
    """``count`` version 7 UUIDs of millisecond ``unix_ms`` (now when None)
    in canonical lower-case text. Ids of one millisecond are ordered by
    their random bits, not by the order drawn: the index needs their
    locality, not a sequence."""
    prefix = uuid7_prefix(time.time_ns() // 1_000_000 if unix_ms is None else unix_ms)
    raw = os.urandom(10 * count).hex()
    return [_uuid7(prefix, raw[start : start + 20]) for start in range(0, 20 * count, 20)]


def _uuid7(prefix: str, h: str) -> str:
    """The id of ``prefix`` (``uuid7_prefix``) and 20 random hex digits (the
    19 used carry 74 random bits: the variant digit keeps two of its four)."""
    return f"{prefix}{h[:3]}-{_VARIANT[h[3]]}{h[4:7]}-{h[7:19]}"


def uuid7_string() -> str:
    """One version 7 UUID of now in canonical text."""
    return uuid7_strings(1)[0]


class Uuid7Source:
    """Version 7 UUIDs one at a time, each of the millisecond it is taken,
    their random bits drawn 256 ids' worth at once (one ``os.urandom`` call,
    not one per id: per attempt, that call was 1 % of the dispatcher's CPU)."""

    def __init__(self) -> None:
        self._random = ""
        self._at = 0

    def next(self) -> str:
        """A fresh id of now."""
        if self._at >= len(self._random):
            self._random, self._at = os.urandom(10 * 256).hex(), 0
        h = self._random[self._at : self._at + 20]
        self._at += 20
        return _uuid7(uuid7_prefix(time.time_ns() // 1_000_000), h)
