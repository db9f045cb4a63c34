"""The dispatcher: claims due deliveries, attempts them with bounded
concurrency, and records the outcomes in batches.

Runs inside ``hookkeeper serve`` or alone as ``hookkeeper dispatcher``; any
number may share one PostgreSQL database (see docs/delivery.md for the queue
design). Delivery is at least once: a row is leased, never removed, until its
outcome is written, so a dispatcher killed mid-flight loses nothing: its rows
fall due again when their leases run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from hookkeeper.service import telemetry
from hookkeeper.service.app import audit as trail
from hookkeeper.service.app import endpoint_health
from hookkeeper.service.app.context import AppContext
from hookkeeper.service.app.delivering import BatchKeys, Deliverer, Outcome, settled
from hookkeeper.service.delivery.http import Sender
from hookkeeper.service.domain import audit
from hookkeeper.service.domain.deliveries import DeliveryKind
from hookkeeper.service.domain.errors import Unavailable
from hookkeeper.service.store import attempts, delivery_queue, gauges
from hookkeeper.service.store.change_feed import ChangeListener
from hookkeeper.service.store.endpoint_health import Admission
from hookkeeper.service.store.records import (
    ClaimedDelivery,
)

_log = logging.getLogger(__name__)
_FLUSH_MAX = 500
# How long the first outcome of a record waits for others to join it.
_RECORD_GATHER_SECONDS = 0.01
_QUEUE_REPORT_SECONDS = 10.0
# A delivery handed back because its host is at the cap is due again after
# this: by then attempts of that host have likely finished (or timed out).
_RELEASE_DELAY = timedelta(seconds=1)
# An attempt longer than this makes its host "slow": capped at per_host.
_SLOW_SECONDS = 1.0
# Fast hosts remembered (least recently seen forgotten first): bounded memory
# with any number of distinct callback hosts.
_FAST_HOSTS_KEPT = 10_000
# Claims under way at once: one claim's round trip (and the event loop's lag
# under load) bounds a single claimer at batch_size per claim; two keep the
# slots fed while one waits. SKIP LOCKED gives them disjoint rows.
_CLAIMS_AT_ONCE = 2


@dataclass(frozen=True)
class DispatcherOptions:
    """How much work one dispatcher takes on, and how often it looks for it."""

    poll_interval: float = 0.25
    batch_size: int = 50
    concurrency: int = 64
    # Attempts in flight to one callback host that is not known to answer
    # within a second (docs/delivery.md: why a quarter).
    per_host: int = 16
    lease_margin: timedelta = timedelta(seconds=30)
    retry_interval_scale: float = 1.0
    # Attempts signing (reading secrets) at once: below the connection pool's
    # size, so concurrency never overflows the pool.
    db_concurrency: int = 16
    # A standby (the second and later copies of `hookkeeper dispatcher
    # --workers N`) answers publishers' wake-ups only while its claims come
    # back sizeable, a backlog; otherwise it claims at its polls. Under a
    # light load the first copy then takes each wake-up's few deliveries
    # alone: when every copy claimed on every wake-up, they split them into
    # smaller batches, each with its fixed costs (claim, record, keys), and
    # one empty claim (docs/delivery.md, round 8).
    standby: bool = False


def _record_admission(admission: Admission) -> None:
    telemetry.record_paused(admission.paused)
    telemetry.record_throttled("retry_after", admission.held)
    telemetry.record_throttled("rate_limit", admission.rate_deferred)


@functools.lru_cache(maxsize=_FAST_HOSTS_KEPT)
def host_of(url: str) -> str:
    """The callback host an attempt occupies: ``host:port`` as written."""
    return urlsplit(url).netloc.lower()


def dispatcher_id() -> str:
    """host:pid:random, recorded with each attempt and lease."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class _Held:
    """A claimed delivery waiting for a free slot."""

    claimed: ClaimedDelivery
    keys: BatchKeys
    since: float  # the event loop's time at the claim


class Dispatcher:
    """One dispatcher process's worker loop."""

    def __init__(self, ctx: AppContext, sender: Sender, options: DispatcherOptions) -> None:
        self._ctx = ctx
        self._sender = sender
        self._options = options
        self.owner = dispatcher_id()
        self._deliverer = Deliverer(
            ctx,
            sender,
            scale=options.retry_interval_scale,
            owner=self.owner,
            db_concurrency=options.db_concurrency,
        )
        self._wakeup = asyncio.Event()
        # Whether unclaimed deliveries may be due: set by a wake-up (a publish
        # committed), a full claim (more may wait) and each poll (retries fall
        # due); cleared as a claim starts, which sees everything committed by
        # then. A wake-up during a claim is kept for the next one, and
        # attempts ending with nothing due start no empty claims.
        self._maybe_due = True
        # Whether wake-ups start claims: always, but for a standby that last
        # found no backlog (DispatcherOptions.standby). On PostgreSQL only:
        # there every publish's NOTIFY reaches the first copy too, while on
        # SQLite a wake-up comes only from a publish in the same process.
        self._standby = options.standby and not ctx.database.is_sqlite
        self._takes_wakeups = True
        self._inflight: set[asyncio.Task[None]] = set()
        # Claimed ahead, waiting for a free slot: a slot freed by an answer is
        # refilled at once instead of after the next claim's round trip.
        self._ready: deque[_Held] = deque()
        self._stopping = False
        self._background: set[asyncio.Task[None]] = set()
        # Claims under way, and how many deliveries they asked for.
        self._claims: set[asyncio.Task[None]] = set()
        self._asked = 0
        self._results: asyncio.Queue[Outcome | None] = asyncio.Queue()
        # Attempts in flight or waiting for a slot per callback host, and per
        # configuration (with its host), for the per-host cap.
        self._hosts: Counter[str] = Counter()
        self._configs: Counter[str] = Counter()
        self._config_host: dict[str, str] = {}
        # Hosts whose last attempt took under _SLOW_SECONDS (most recent last).
        self._fast: OrderedDict[str, None] = OrderedDict()

    def wake(self) -> None:
        """Look for due work now instead of at the next poll (a standby:
        only while it finds a backlog)."""
        if self._takes_wakeups:
            self._maybe_due = True
            self._wakeup.set()

    def _cap(self, host: str) -> int:
        """A host known to answer quickly frees its slots at once and may use
        them all, and the batch held ahead too; any other (new, slow or
        hanging) holds at most per_host, in flight and held together."""
        options = self._options
        return options.concurrency + options.batch_size if host in self._fast else options.per_host

    def _answered(self, host: str, seconds: float) -> None:
        """Learns from an attempt's duration whether its host is fast."""
        if seconds < _SLOW_SECONDS:
            self._fast[host] = None
            self._fast.move_to_end(host)
            while len(self._fast) > _FAST_HOSTS_KEPT:
                self._fast.popitem(last=False)
        else:
            self._fast.pop(host, None)

    def _saturated_configs(self) -> list[str]:
        """Configurations in flight whose host is at the cap: not claimed."""
        return [c for c, host in self._config_host.items() if self._hosts[host] >= self._cap(host)]

    async def _claim(self, limit: int) -> tuple[list[ClaimedDelivery], int]:
        token = str(uuid.uuid4())
        claimed: list[ClaimedDelivery] = []
        gated = limit
        if not self._ctx.database.is_sqlite:
            # One statement in autocommit for the common case; rows behind a
            # gate (disabled, Retry-After, per-second cap) take the path below.
            async with self._ctx.database.driver() as pg:
                claimed, gated = await delivery_queue.claim_plain(
                    pg,
                    now=self._ctx.clock(),
                    limit=limit,
                    owner=self.owner,
                    token=token,
                    lease_margin=self._options.lease_margin,
                    skip_configs=self._saturated_configs(),
                )
        if gated:
            try:
                async with self._ctx.database.write() as conn:
                    claimed += await delivery_queue.claim_due(
                        conn,
                        now=self._ctx.clock(),
                        limit=gated,
                        owner=self.owner,
                        token=token,
                        lease_margin=self._options.lease_margin,
                        on_admission=_record_admission,
                        skip_configs=self._saturated_configs(),
                    )
            except Exception:
                if not claimed:
                    raise
                # What the first statement leased (committed) goes ahead.
                _log.exception("cannot claim gated deliveries; retrying at the next claim")
        over = self._over_cap(claimed)
        handed_back = {id(c) for c in over}
        kept = [c for c in claimed if id(c) not in handed_back]
        # Counted at once (before any await): a claim running beside this one
        # sees them against the cap.
        for item in kept:
            self._count(item)
        if over:
            # Handed back before any attempt: due again soon, with the
            # claim's attempt number returned.
            try:
                async with self._ctx.database.autocommit() as conn:
                    await delivery_queue.release(
                        conn,
                        [c.delivery.id for c in over],
                        token,
                        self._ctx.clock() + _RELEASE_DELAY,
                    )
            except Exception:
                # Their leases run out instead; what was kept goes ahead.
                _log.warning("cannot hand back %d deliveries over the host cap", len(over))
            telemetry.record_throttled("host_cap", len(over))
        return kept, len(over)

    def _over_cap(self, claimed: list[ClaimedDelivery]) -> list[ClaimedDelivery]:
        """The claimed deliveries whose host would go over the cap."""
        planned: Counter[str] = Counter()
        over = []
        for item in claimed:
            if item.target is None:
                continue
            host = host_of(item.target.callback_url)
            if self._hosts[host] + planned[host] >= self._cap(host):
                over.append(item)
            else:
                planned[host] += 1
        return over

    def _count(self, claimed: ClaimedDelivery) -> None:
        """Counts a delivery against its host's cap, from its claim on."""
        if claimed.target is not None:
            host = host_of(claimed.target.callback_url)
            config = claimed.target.config_id
            self._hosts[host] += 1
            self._configs[config] += 1
            self._config_host[config] = host

    def _uncount(self, claimed: ClaimedDelivery) -> None:
        if claimed.target is not None:
            host = host_of(claimed.target.callback_url)
            config = claimed.target.config_id
            self._hosts[host] -= 1
            if not self._hosts[host]:
                del self._hosts[host]
            self._configs[config] -= 1
            if not self._configs[config]:
                del self._configs[config]
                del self._config_host[config]

    async def _claim_into(self, wanted: int) -> None:
        """One claim, run beside the loop (up to _CLAIMS_AT_ONCE at once): its
        deliveries start in the free slots or wait for one."""
        claimed: list[ClaimedDelivery] = []
        released = 0
        try:
            claimed, released = await self._claim(wanted)
        except Unavailable:
            pass  # logged once by the database's availability
        except Exception:
            _log.exception("cannot claim deliveries; retrying after the poll interval")
        finally:
            self._asked -= wanted
        self._accept(claimed)
        if self._standby:
            self._takes_wakeups = len(claimed) + released >= self._claim_threshold
        if claimed and len(claimed) + released == wanted:
            self._maybe_due = True  # a full batch: more may be due right now
        if self._maybe_due:
            self._wakeup.set()

    def _accept(self, claimed: list[ClaimedDelivery]) -> None:
        """Starts what the free slots allow and holds the rest for the next
        free slot (the claim counted them against their hosts' caps)."""
        keys = BatchKeys()  # dropped with the batch's last attempt
        now = asyncio.get_running_loop().time()
        for item in claimed:
            if not self._stopping and len(self._inflight) < self._options.concurrency:
                self._start(item, keys)
            else:
                self._ready.append(_Held(item, keys, now))

    def _start(self, claimed: ClaimedDelivery, keys: BatchKeys) -> None:
        task = asyncio.create_task(self._tracked(claimed, keys))
        self._inflight.add(task)
        task.add_done_callback(self._done)

    def _refill(self) -> None:
        """Starts held deliveries in the free slots. One held longer than half
        the lease margin is handed back instead: started now, it might still
        be in flight when its lease ends."""
        stale_after = self._options.lease_margin.total_seconds() / 2
        now = asyncio.get_running_loop().time()
        stale = []
        while self._ready and len(self._inflight) < self._options.concurrency:
            held = self._ready.popleft()
            if now - held.since > stale_after:
                stale.append(held.claimed)
            else:
                self._start(held.claimed, held.keys)
        if stale:
            task = asyncio.create_task(self._hand_back(stale))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _hand_back(self, claimed: list[ClaimedDelivery]) -> None:
        """Releases leased deliveries never attempted (due again at once)."""
        by_token: dict[str, list[str]] = {}
        for item in claimed:
            by_token.setdefault(item.lease_token, []).append(item.delivery.id)
        try:
            async with self._ctx.database.autocommit() as conn:
                for token, ids in by_token.items():
                    await delivery_queue.release(conn, ids, token, self._ctx.clock())
        except Exception:
            # Their leases run out and they are claimed again: nothing is lost.
            _log.warning("cannot hand back %d unattempted deliveries", len(claimed))
        finally:
            for item in claimed:
                self._uncount(item)

    async def _tracked(self, claimed: ClaimedDelivery, keys: BatchKeys) -> None:
        """One attempt, counted against its host's cap until it ends."""
        if claimed.target is None:
            await self._one(claimed, keys)
            return
        host = host_of(claimed.target.callback_url)
        loop = asyncio.get_running_loop()
        began = loop.time()
        # Still in flight after _SLOW_SECONDS: the host is slow from now on,
        # not only once this attempt ends (it may hang for its whole timeout).
        slow = loop.call_later(_SLOW_SECONDS, self._fast.pop, host, None)
        try:
            await self._one(claimed, keys)
        finally:
            slow.cancel()
            self._answered(host, loop.time() - began)
            self._uncount(claimed)

    async def _one(self, claimed: ClaimedDelivery, keys: BatchKeys) -> None:
        event = claimed.event
        event_type = event.event_type if event is not None else claimed.delivery.kind
        # One trace per attempt (no-op when tracing is off): the signing
        # queries and the POST's client span are its children.
        with telemetry.span(
            "delivery attempt",
            {
                "hookkeeper.delivery.id": claimed.delivery.id,
                "hookkeeper.event_type": event_type,
                "hookkeeper.attempt": claimed.delivery.attempt_count,
            },
        ) as current:
            try:
                outcome = await self._deliverer.attempt(claimed, keys)
            except Unavailable:
                # The outage is logged once by the database's availability;
                # the lease runs out and the attempt is made again.
                return
            except Exception:
                # Unexpected (e.g. the database is down while signing): the lease
                # runs out and another attempt follows; nothing is lost.
                _log.exception("attempt of delivery %s failed unexpectedly", claimed.delivery.id)
                return
            if current is not None:
                current.set_attribute("hookkeeper.delivery.outcome", outcome.settlement.state)
        telemetry.record_delivery(
            outcome.settlement.state, event_type, outcome.attempt.latency_ms / 1000
        )
        await self._results.put(outcome)

    @property
    def _claim_threshold(self) -> int:
        # Claim in sizeable batches: refilling one free slot at a time would
        # spend a claiming transaction per delivery.
        return max(1, min(self._options.batch_size, self._options.concurrency) // 2)

    @property
    def _room(self) -> int:
        """Deliveries to claim for: free slots plus a batch held ahead."""
        options = self._options
        return options.concurrency + options.batch_size - len(self._inflight) - len(self._ready)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if self._stopping:
            return
        self._refill()
        if self._maybe_due and self._room >= self._claim_threshold:
            self._wakeup.set()

    async def _record(self) -> None:
        """Writes outcomes in batches: one transaction for many attempts."""
        stopping = False
        while not stopping:
            first = await self._results.get()
            batch: list[Outcome] = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
                if self._results.qsize() < _FLUSH_MAX:
                    # Let a few more outcomes arrive: under a light load they
                    # come one at a time, and one statement each cost more
                    # than the attempts (docs/delivery.md, round 7). The wait
                    # delays no delivery, only its record.
                    await asyncio.sleep(_RECORD_GATHER_SECONDS)
            while len(batch) < _FLUSH_MAX and not self._results.empty():
                item = self._results.get_nowait()
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            while batch:
                try:
                    await self._write(batch)
                    batch = []
                except Unavailable:
                    await asyncio.sleep(1)  # logged once by the database's availability
                except Exception:
                    _log.exception("cannot record %d outcomes; retrying", len(batch))
                    await asyncio.sleep(1)

    async def _write(self, batch: list[Outcome]) -> None:
        now = self._ctx.clock()
        events = [
            o
            for o in batch
            if o.claimed.target is not None and o.claimed.delivery.kind == DeliveryKind.EVENT
        ]
        if not self._ctx.database.is_sqlite and all(o.attempt.succeeded for o in events):
            # The common case in one statement: nothing for endpoint health
            # to do but end the failure runs of these configurations.
            async with self._ctx.database.driver() as pg:
                await attempts.record_batch(
                    pg,
                    [o.attempt for o in batch],
                    [settled(o) for o in batch],
                    list({o.claimed.delivery.callback_config_id for o in events}),
                    now,
                )
            return
        async with self._ctx.database.write() as conn:
            await attempts.insert_attempts(conn, [o.attempt for o in batch])
            await delivery_queue.settle_many(
                conn,
                [
                    {
                        "b_id": o.claimed.delivery.id,
                        "b_token": o.claimed.lease_token,
                        "b_state": o.settlement.state,
                        "b_round_failures": o.settlement.round_failures,
                        "b_next": o.settlement.next_attempt_time,
                        "b_error": o.settlement.last_error,
                        "b_now": now,
                    }
                    for o in batch
                ],
            )
            disabled = await endpoint_health.after_attempts(
                conn, batch, now, self._ctx.policy.disable_after
            )
            if disabled:
                # Last in the transaction (the trail's append lock), as the dispatcher.
                await trail.record(
                    self._ctx,
                    conn,
                    *[
                        audit.Draft(audit.CONFIG_DISABLE, str(name), name.partner_id)
                        for name in disabled
                    ],
                    actor="dispatcher",
                )
        for name in disabled:
            _log.warning("callback configuration %s disabled by its attempts' outcomes", name)
            self._ctx.invalidate(name.config_id)

    async def _report_queue(self, stop: asyncio.Event) -> None:
        """Feeds the queue gauges every few seconds (only when metrics are on):
        a dispatcher run alone has no GaugeSampler of ``hookkeeper serve``."""
        while not stop.is_set():
            try:
                async with self._ctx.database.read() as conn:
                    depth, age = await gauges.delivery_queue(conn, self._ctx.clock())
                telemetry.set_delivery_queue(depth, age)
            except Unavailable:
                pass  # logged once by the database's availability
            except Exception:
                _log.exception("cannot read the queue's size")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _QUEUE_REPORT_SECONDS)

    async def run(self, stop: asyncio.Event) -> None:
        """Works until ``stop`` is set, then finishes the attempts in flight
        (each bounded by its request timeout) and records them."""
        options = self._options
        recorder = asyncio.create_task(self._record())
        listener = None
        if not self._ctx.database.is_sqlite:
            # Publishers NOTIFY on commit: new deliveries start at once, not
            # at the next poll (which stays, for retries falling due).
            listener = ChangeListener(
                self._ctx.database.engine.url.render_as_string(hide_password=False),
                on_change=lambda _payload: self.wake(),
                on_live=lambda _live: None,
                channel=delivery_queue.DUE_CHANNEL,
            )
            listener.start()
        reporter = (
            asyncio.create_task(self._report_queue(stop)) if telemetry.metrics_enabled() else None
        )
        _log.info(
            "dispatcher %s started on %s (concurrency %d, batch %d, poll %.2fs)",
            self.owner,
            type(asyncio.get_running_loop()).__module__.split(".")[0],
            options.concurrency,
            options.batch_size,
            options.poll_interval,
        )
        try:
            while not stop.is_set():
                # Cleared before deciding, not after: a wake-up that arrives
                # meanwhile must start the next claim, not wait for a poll.
                self._wakeup.clear()
                wanted = min(options.batch_size, self._room - self._asked)
                idle = not (self._inflight or self._ready or self._claims)
                if (
                    self._maybe_due
                    and len(self._claims) < _CLAIMS_AT_ONCE
                    and (wanted >= self._claim_threshold or (idle and wanted > 0))
                ):
                    self._maybe_due = False
                    self._asked += wanted
                    claim = asyncio.create_task(self._claim_into(wanted))
                    self._claims.add(claim)
                    claim.add_done_callback(self._claims.discard)
                    continue
                waiters = [
                    asyncio.create_task(self._wakeup.wait()),
                    asyncio.create_task(stop.wait()),
                ]
                woken, _ = await asyncio.wait(
                    waiters, timeout=options.poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
                if not woken:
                    self._maybe_due = True  # the poll: retries may have fallen due
                for waiter in waiters:
                    waiter.cancel()
        finally:
            self._stopping = True
            if self._claims:
                await asyncio.gather(*self._claims, return_exceptions=True)
            if listener is not None:
                await listener.stop()
            if self._ready:
                # Claimed ahead but never started: handed back, not left to
                # wait for their leases to end.
                held = [h.claimed for h in self._ready]
                self._ready.clear()
                await self._hand_back(held)
            if self._background:
                await asyncio.gather(*self._background, return_exceptions=True)
            if self._inflight:
                _log.info("dispatcher stopping: finishing %d attempts", len(self._inflight))
                await asyncio.gather(*self._inflight, return_exceptions=True)
            await self._results.put(None)
            with contextlib.suppress(Exception):
                await recorder
            if reporter is not None:
                reporter.cancel()
                with contextlib.suppress(BaseException):
                    await reporter
            _log.info("dispatcher %s stopped", self.owner)
