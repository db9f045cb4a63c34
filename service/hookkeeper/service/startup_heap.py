"""A process's heap at start-up, kept out of the garbage collector's full
collections (``hookkeeper serve`` and ``hookkeeper dispatcher``)."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Moves every object alive once the process is built (modules, classes,
    protobuf descriptors, SQLAlchemy's metadata: ~125,000 of them) out of the
    cyclic garbage collector's reach; returns how many are frozen. They live
    as long as the process, yet each full collection walked them all:
    - serve: a BatchPublishEvents of 1,000 events allocates enough to trigger
      one every few calls, 7.5 of 34.5 ms per batch in-process;
    - the dispatcher: a full collection every second or so at 1,400
      deliveries/s, each stopping every attempt in flight for ~90 ms, the
      half-rate p99 (docs/delivery.md, rounds 5 and 6).
    Garbage is collected first, so none of it is kept."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
