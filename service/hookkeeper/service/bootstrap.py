"""Builds the application's dependencies from Settings.

Development conveniences (a generated master key and service token) are
written once under ``var/`` and announced loudly, never used silently.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

from hookkeeper.service.app.config_cache import ConfigCache
from hookkeeper.service.app.context import AppContext, Clock, Policy, system_clock
from hookkeeper.service.app.token_revocations import poll_revocations
from hookkeeper.service.crypto.keyring import Keyring, generate_key_entry
from hookkeeper.service.settings import Settings
from hookkeeper.service.store.change_feed import REVOCATION_CHANNEL, ChangeListener
from hookkeeper.service.store.database import Database

Worker = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

_log = logging.getLogger(__name__)


def _dev_file(path: Path, make: object, what: str) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make() if callable(make) else str(make))
    _log.warning(
        "DEVELOPMENT ONLY: %s is not set; using the generated one in %s. "
        "Set it explicitly in any real deployment.",
        what,
        path,
    )
    return path.read_text().strip()


def load_keyring(settings: Settings) -> Keyring:
    """The keyring from HOOKKEEPER_MASTER_KEYS, or a generated development key."""
    if settings.master_keys is not None:
        return Keyring.parse(settings.master_keys.get_secret_value())
    entry = _dev_file(
        settings.var_dir / "dev-master-key", generate_key_entry, "HOOKKEEPER_MASTER_KEYS"
    )
    return Keyring.parse(entry)


def load_service_tokens(settings: Settings) -> str:
    """HOOKKEEPER_SERVICE_TOKENS, or a generated development token."""
    if settings.service_tokens is not None:
        return settings.service_tokens.get_secret_value()
    return _dev_file(
        settings.var_dir / "dev-service-tokens",
        lambda: f"dev={secrets.token_urlsafe(24)}",
        "HOOKKEEPER_SERVICE_TOKENS",
    )


def policy(settings: Settings) -> Policy:
    """The operator policy from settings."""
    return Policy(
        allow_insecure_callbacks=settings.allow_insecure_callbacks,
        secret_validity=timedelta(days=settings.secret_validity_days),
        disable_after=timedelta(hours=settings.disable_after_hours),
    )


def build_context(settings: Settings, clock: Clock = system_clock) -> AppContext:
    """Database, keyring, policy and clock, ready for the use cases.

    On PostgreSQL the context carries a read cache, off until a change feed
    (``cache_worker``) switches it on.
    """
    database = Database(
        settings.resolved_database_url(),
        pool_size=settings.db_pool_size,
        connect_timeout=settings.db_connect_timeout_seconds,
    )
    cache = None
    if not database.is_sqlite and settings.read_cache_seconds > 0:
        cache = ConfigCache(ttl_seconds=settings.read_cache_seconds)
    return AppContext(
        database=database,
        keyring=load_keyring(settings),
        policy=policy(settings),
        clock=clock,
        cache=cache,
    )


def cache_worker(ctx: AppContext, settings: Settings) -> Worker | None:
    """The background task that keeps ``ctx``'s read cache coherent across
    replicas (None when the context has no cache)."""
    cache = ctx.cache
    if cache is None:
        return None

    async def run(stop: asyncio.Event) -> None:
        listener = ChangeListener(
            settings.resolved_database_url(),
            on_change=cache.invalidate,
            on_live=lambda live: cache.reset(enabled=live),
        )
        listener.start()
        try:
            await stop.wait()
        finally:
            await listener.stop()

    return run


def revocation_worker(ctx: AppContext, settings: Settings) -> Worker:
    """The background task feeding ``ctx.revocations`` (WatchTokenRevocations):
    LISTEN on PostgreSQL, a poll of the token table on SQLite."""
    feed = ctx.revocations

    async def run(stop: asyncio.Event) -> None:
        if ctx.database.is_sqlite:
            await poll_revocations(ctx.database, feed, stop)
            return
        listener = ChangeListener(
            settings.resolved_database_url(),
            on_change=lambda partner_id: feed.publish([partner_id]),
            on_live=feed.set_live,
            channel=REVOCATION_CHANNEL,
        )
        listener.start()
        try:
            await stop.wait()
        finally:
            await listener.stop()

    return run
