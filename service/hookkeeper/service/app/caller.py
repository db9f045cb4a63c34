"""Who is calling: set by the transport once a caller is authenticated, read
by the use cases for the audit trail and by list calls for their scope."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar

from hookkeeper.service.domain.principals import ALL, Principal

# Local commands (the CLI) act as the operator who runs them.
OPERATOR = Principal("operator", (ALL,), (ALL,))

_current: ContextVar[Principal | None] = ContextVar("hookkeeper_caller", default=None)


def current() -> Principal:
    """The calling principal; the local operator outside an RPC."""
    return _current.get() or OPERATOR


def act_for_this_task(principal: Principal) -> None:
    """Everything after this in the current task runs as ``principal``, with
    no reset: for a streaming handler, whose generator may be closed from
    another context, where resetting would raise. The RPC owns its task."""
    _current.set(principal)


@contextmanager
def acting_as(principal: Principal) -> Iterator[None]:
    """Everything inside runs as ``principal``."""
    token = _current.set(principal)
    try:
        yield
    finally:
        # A server stream the client abandons is closed from another
        # context (asyncio finalises the generator in a task of its own);
        # the variable dies with the RPC's context then, so there is
        # nothing to reset.
        with suppress(ValueError):
            _current.reset(token)
