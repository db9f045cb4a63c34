"""The read cache's rules, without a database."""

from __future__ import annotations

from service.app.config_cache import ConfigCache


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
