"""The read cache's rules, without a database."""

from __future__ import annotations

import pytest

from hookkeeper.service.app.config_cache import ConfigCache, read_through


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_disabled_until_the_feed_is_live() -> None:
    cache = ConfigCache()
    cache.put(("config", "p", "c1"), "row", cache.epoch())
    assert cache.get(("config", "p", "c1")) is None
    cache.reset(enabled=True)
    cache.put(("config", "p", "c1"), "row", cache.epoch())
    assert cache.get(("config", "p", "c1")) == "row"
    cache.reset(enabled=False)  # the feed dropped: nothing may be served
    assert cache.get(("config", "p", "c1")) is None


def test_invalidation_drops_every_kind_for_the_config() -> None:
    cache = ConfigCache()
    cache.reset(enabled=True)
    for kind in ("config", "secrets"):
        cache.put((kind, "p", "c1"), kind, cache.epoch())
    cache.put(("config", "p", "c2"), "other", cache.epoch())
    cache.invalidate("c1")
    assert cache.get(("config", "p", "c1")) is None
    assert cache.get(("secrets", "p", "c1")) is None
    assert cache.get(("config", "p", "c2")) == "other"


def test_a_read_that_raced_a_write_is_not_cached() -> None:
    cache = ConfigCache()
    cache.reset(enabled=True)
    epoch = cache.epoch()  # reader starts reading the database...
    cache.invalidate("c1")  # ...a write commits meanwhile...
    cache.put(("config", "p", "c1"), "stale", epoch)  # ...the stale read comes back
    assert cache.get(("config", "p", "c1")) is None


def test_entries_expire_and_the_size_is_bounded() -> None:
    ticks = Ticks()
    cache = ConfigCache(ttl_seconds=5, max_entries=2, monotonic=ticks)
    cache.reset(enabled=True)
    cache.put(("config", "p", "a"), 1, cache.epoch())
    ticks.now = 4.9
    assert cache.get(("config", "p", "a")) == 1
    ticks.now = 5.0
    assert cache.get(("config", "p", "a")) is None
    for name in ("a", "b", "c"):
        cache.put(("config", "p", name), name, cache.epoch())
    assert cache.get(("config", "p", "a")) is None
    assert cache.get(("config", "p", "c")) == "c"


async def test_read_through_loads_once_and_never_caches_a_failure() -> None:
    cache = ConfigCache()
    cache.reset(enabled=True)
    loads: list[str] = []

    async def load() -> str:
        loads.append("db")
        return "row"

    async def missing() -> str:
        loads.append("db")
        raise LookupError("not found")

    key = ("config", "p", "c1")
    assert await read_through(cache, key, load) == "row"
    assert await read_through(cache, key, load) == "row"
    assert loads == ["db"]
    for _ in range(2):
        with pytest.raises(LookupError):
            await read_through(cache, ("config", "p", "gone"), missing)
    assert loads == ["db", "db", "db"]
    assert await read_through(None, key, load) == "row"  # no cache: always loads
    assert len(loads) == 4
