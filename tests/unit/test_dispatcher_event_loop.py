"""The dispatcher's event loop setting: uvloop by default, asyncio's on request."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from pydantic import ValidationError

from hookkeeper.service.delivery.runtime import loop_factory
from hookkeeper.service.settings import Settings


def test_uvloop_is_the_default_and_asyncio_is_asyncios_own() -> None:
    factory = loop_factory(Settings().dispatcher_event_loop)
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    assert loop_factory("asyncio") is None
    with asyncio.Runner(loop_factory=loop_factory("asyncio")) as runner:
        assert not isinstance(runner.get_loop(), uvloop.Loop)


def test_an_unknown_loop_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKKEEPER_DISPATCHER_EVENT_LOOP", "trio")
    with pytest.raises(ValidationError, match="dispatcher_event_loop"):
        Settings()
