"""The server's heap at start-up is kept out of the garbage collector's
full collections (``startup_heap.freeze_startup_heap``)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from hookkeeper.service.startup_heap import freeze_startup_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_startup_objects_are_frozen_and_garbage_is_not() -> None:
    class Node:
        """A reference cycle: only the cyclic collector frees it."""

        def __init__(self) -> None:
            self.me = self

    kept = Node()
    garbage = Node()
    collected: list[bool] = []
    weakref.finalize(garbage, collected.append, True)
    del garbage
    frozen = freeze_startup_heap()
    assert collected == [True]  # collected before the freeze, not kept
    assert frozen == gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # out of every generation
