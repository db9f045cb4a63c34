"""The audit trail: events, their hash chain, and its verification.

An event is written with the change it describes, then *sealed* (in commit
order, by one sealer at a time): it gets the next sequence number, the hash
of the event before it and its own hash over every field, so altering a row
breaks its own hash and deleting one breaks the link (and the run of
sequence numbers) of the next. Sealing apart from the write keeps the append
lock off the write path. Events hold names, never a
secret, an API key or a token: they are shaped only from the fields below.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from hookkeeper.service.domain.errors import invalid

GENESIS = "0" * 64

# Actions, `subject.verb`.
CONFIG_CREATE = "callback_config.create"
CONFIG_UPDATE = "callback_config.update"
CONFIG_DELETE = "callback_config.delete"
CONFIG_ENABLE = "callback_config.enable"
CONFIG_DISABLE = "callback_config.disable"
SECRET_REFRESH = "secret.refresh"
SECRET_REVOKE = "secret.revoke"
SECRET_SIGN = "secret.sign"  # counted: one event per principal, configuration and minute
SUBSCRIPTION_CREATE = "subscription.create"
SUBSCRIPTION_UPDATE = "subscription.update"
SUBSCRIPTION_DELETE = "subscription.delete"
PARTNER_CREATE = "partner.create"
PARTNER_TOKEN_ISSUE = "partner_token.issue"
PARTNER_TOKEN_REVOKE = "partner_token.revoke"
MASTER_KEY_ROTATE = "master_key.rotate"
CALL_DENIED = "call.denied"

OK = "OK"
DENIED = "PERMISSION_DENIED"


@dataclass(frozen=True)
class Draft:
    """An event before it joins the chain."""

    action: str
    resource: str
    partner_id: str | None = None
    outcome: str = OK
    # How many uses one event stands for (SignNotification per minute), else 1.
    count: int = 1


@dataclass(frozen=True)
class AuditEvent:
    """An event as stored; ``seq``, ``prev_hash`` and ``hash`` are None until sealed."""

    seq: int | None
    event_time: datetime
    actor: str
    action: str
    resource: str
    partner_id: str | None
    outcome: str
    trace_id: str
    count: int
    prev_hash: str | None
    hash: str | None
    # Storage order (assigned on insert), the name's id; 0 before insert.
    id: int = 0


def pending(draft: Draft, *, at: datetime, actor: str, trace_id: str) -> AuditEvent:
    """The unsealed event of ``draft``."""
    return AuditEvent(
        seq=None,
        event_time=at,
        actor=actor,
        action=draft.action,
        resource=draft.resource,
        partner_id=draft.partner_id,
        outcome=draft.outcome,
        trace_id=trace_id,
        count=draft.count,
        prev_hash=None,
        hash=None,
    )


def _canonical(event: AuditEvent) -> bytes:
    # Microseconds in UTC: both databases keep exactly that much.
    moment = event.event_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fields = [
        event.seq,
        moment,
        event.actor,
        event.action,
        event.resource,
        event.partner_id,
        event.outcome,
        event.trace_id,
        event.count,
        event.prev_hash,
    ]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


def event_hash(event: AuditEvent) -> str:
    """The hash an event must carry (its own ``hash`` field is not part of it)."""
    return hashlib.sha256(_canonical(event)).hexdigest()


def seal(previous: tuple[int, str] | None, events: Iterable[AuditEvent]) -> list[AuditEvent]:
    """``events`` sealed in the order given, following ``previous`` (the seq
    and hash of the last sealed event; None for the first event ever)."""
    seq, prev = previous or (0, GENESIS)
    sealed = []
    for event in events:
        seq += 1
        linked = replace(event, seq=seq, prev_hash=prev, hash=None)
        linked = replace(linked, hash=event_hash(linked))
        sealed.append(linked)
        prev = str(linked.hash)
    return sealed


def chain(
    previous: tuple[int, str] | None,
    drafts: Iterable[Draft],
    *,
    at: datetime,
    actor: str,
    trace_id: str,
) -> list[AuditEvent]:
    """Sealed events for ``drafts`` (written and sealed at once)."""
    return seal(previous, (pending(d, at=at, actor=actor, trace_id=trace_id) for d in drafts))


@dataclass(frozen=True)
class Problem:
    """One break in the chain, naming the row."""

    seq: int
    description: str

    def __str__(self) -> str:
        return f"audit event {self.seq}: {self.description}"


def verify(
    events: Iterable[AuditEvent], previous: tuple[int, str] | None = None
) -> Iterator[Problem]:
    """The breaks in a run of events in sequence order (``previous``: the seq
    and hash of the last event before the run, when it does not start at 1)."""
    expected_seq, expected_prev = previous or (0, GENESIS)
    for event in events:
        assert event.seq is not None, "verify walks sealed events only"
        expected_seq += 1
        if event.seq != expected_seq:
            yield Problem(
                event.seq,
                f"events {expected_seq}..{event.seq - 1} are missing (deleted)",
            )
        elif event.prev_hash != expected_prev:
            yield Problem(
                event.seq,
                f"its link to event {expected_seq - 1} does not match "
                f"(event {expected_seq - 1} was altered or replaced)",
            )
        if event_hash(event) != event.hash:
            yield Problem(event.seq, "its contents do not match its hash (altered)")
        expected_seq, expected_prev = event.seq, str(event.hash)


@dataclass(frozen=True)
class Filter:
    """What ListAuditEvents' ``filter`` selects (all optional)."""

    resource: str | None = None
    action: str | None = None
    start_time: datetime | None = None  # inclusive
    end_time: datetime | None = None  # exclusive


_TERM = re.compile(r'\s*(resource|action|time)\s*(=|>=|<=|>|<)\s*"([^"\\]*)"\s*')


def _time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid("filter", f"{value!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise invalid("filter", f"{value!r} needs a time zone (Z or +hh:mm)")
    return moment.astimezone(UTC)


def parse_filter(text: str) -> Filter:
    """Reads an AIP-160 subset: terms joined by ``AND``, each ``resource =
    "…"``, ``action = "…"`` or ``time >= "…"`` / ``time < "…"`` (RFC 3339)."""
    found = Filter()
    if not text.strip():
        return found
    for term in re.split(r"\s+AND\s+", text.strip()):
        match = _TERM.fullmatch(term)
        if match is None:
            raise invalid(
                "filter",
                'each term must be resource = "…", action = "…", time >= "…" or '
                'time < "…", joined by AND',
            )
        key, op, value = match.groups()
        if key in {"resource", "action"} and op != "=":
            raise invalid("filter", f"{key} supports only =")
        if key == "resource":
            found = replace(found, resource=value)
        elif key == "action":
            found = replace(found, action=value)
        elif op in {">=", ">"}:
            found = replace(found, start_time=_time(value))
        elif op in {"<", "<="}:
            found = replace(found, end_time=_time(value))
        else:
            raise invalid("filter", "time supports >=, >, < and <=")
    return found


@dataclass
class SignTally:
    """SignNotification uses counted per (principal, configuration, minute),
    so signing writes nothing per call; complete minutes are drained into
    one event each."""

    counts: dict[tuple[str, str, str | None, datetime], int]

    def __init__(self) -> None:
        self.counts = {}

    def add(self, actor: str, resource: str, partner_id: str | None, at: datetime) -> None:
        """Counts one use at ``at``."""
        key = (actor, resource, partner_id, at.replace(second=0, microsecond=0))
        self.counts[key] = self.counts.get(key, 0) + 1

    def restore(self, drained: list[tuple[str, datetime, Draft]]) -> None:
        """Puts back counts whose write failed, to be written with the next."""
        for actor, minute, draft in drained:
            key = (actor, draft.resource, draft.partner_id, minute)
            self.counts[key] = self.counts.get(key, 0) + draft.count

    def drain(self, before: datetime | None = None) -> list[tuple[str, datetime, Draft]]:
        """(actor, minute, draft) of every minute that started before
        ``before`` (all when None), removed from the tally."""
        cutoff = before.replace(second=0, microsecond=0) if before else None
        drained = []
        for key in [k for k in self.counts if cutoff is None or k[3] < cutoff]:
            actor, resource, partner_id, minute = key
            count = self.counts.pop(key)
            drained.append((actor, minute, Draft(SECRET_SIGN, resource, partner_id, OK, count)))
        return drained
