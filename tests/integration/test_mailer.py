"""The expiry mailer against a real database (SQLite and PostgreSQL) and a
real SMTP server in the test process; the clock is moved by hand."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest

from hookkeeper.service.app.callback_configs import CallbackConfigs
from hookkeeper.service.app.context import AppContext, Policy
from hookkeeper.service.app.secret_rotation import SecretRotation
from hookkeeper.service.crypto.keyring import Keyring
from hookkeeper.service.domain.callback_config import ConfigFields
from hookkeeper.service.domain.expiry_warnings import Backoff
from hookkeeper.service.domain.names import ConfigName
from hookkeeper.service.mail.smtp import SmtpTransport, SmtpUrl
from hookkeeper.service.mail.worker import ExpiryMailer
from hookkeeper.service.store import migrate
from hookkeeper.service.store.database import Database
from tests.support.clock import FakeClock
from tests.support.postgres import create_database as create_postgres_database
from tests.support.postgres import drop_database as drop_postgres_database
from tests.support.postgres import require_postgres
from tests.support.smtp import SmtpServer, body_text, smtp_server

FIELDS = ConfigFields(
    callback_url="https://hooks.example.com/notifications",
    api_key="api-key-that-must-never-be-mailed",
    contact_email="ops@example.com",
)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on a free port."""
    with smtp_server() as server:
        yield server


def mailer(ctx: AppContext, smtp: SmtpServer) -> ExpiryMailer:
    return ExpiryMailer(
        ctx,
        SmtpTransport(SmtpUrl.parse(smtp.url), timeout=5),
        "Hookkeeper <noreply@example.com>",
        backoff=Backoff(timedelta(minutes=1), timedelta(minutes=10)),
    )


async def create(ctx: AppContext, email: str = "ops@example.com") -> tuple[ConfigName, str]:
    created = await CallbackConfigs(ctx).create(
        "acme-lodging", ConfigFields(FIELDS.callback_url, FIELDS.api_key, email)
    )
    return created.config.name, created.secret


def subjects(smtp: SmtpServer) -> list[str]:
    return [str(m["Subject"]) for m in smtp.inbox.messages]


async def test_a_year_passes_and_each_warning_goes_once(
    app_context: AppContext, clock: FakeClock, smtp: SmtpServer
) -> None:
    name, secret = await create(app_context)
    worker = mailer(app_context, smtp)
    expires = clock.now + timedelta(days=365)
    sent_per_step = []
    # Walk the year (and past the expiry) polling once a day.
    while clock.now < expires + timedelta(days=5):
        sent_per_step.append(await worker.run_once())
        clock.advance(timedelta(days=1))
    assert sum(sent_per_step) == 3
    assert [s.split("expires in ")[1] for s in subjects(smtp)] == ["30 days", "7 days", "1 day"]
    first = smtp.inbox.messages[0]
    assert smtp.inbox.recipients[0] == ["ops@example.com"]
    text, html = body_text(first, "plain"), body_text(first, "html")
    for body in (text, html):
        assert name.config_id in body
        assert expires.strftime("%Y-%m-%d %H:%M:%S UTC") in body
        assert "refreshNotificationCallbackConfigSecret" in body
    assert FIELDS.callback_url in text
    raw = b"".join(m.as_bytes() for m in smtp.inbox.messages)
    assert secret.encode() not in raw
    assert FIELDS.api_key.encode() not in raw


async def test_after_downtime_only_the_nearest_warning_is_sent(
    app_context: AppContext, clock: FakeClock, smtp: SmtpServer
) -> None:
    await create(app_context)
    worker = mailer(app_context, smtp)
    clock.advance(timedelta(days=365 - 3))  # the 30- and 7-day moments passed while down
    assert await worker.run_once() == 1
    assert await worker.run_once() == 0
    clock.advance(timedelta(days=2, hours=12))
    assert await worker.run_once() == 1
    assert [s.split("expires in ")[1] for s in subjects(smtp)] == ["7 days", "1 day"]


async def test_a_restarted_mailer_does_not_send_again(
    app_context: AppContext, clock: FakeClock, smtp: SmtpServer
) -> None:
    await create(app_context)
    clock.advance(timedelta(days=340))
    assert await mailer(app_context, smtp).run_once() == 1
    # A new mailer over a new connection pool: all state is in the database.
    url = app_context.database.engine.url.render_as_string(hide_password=False)
    fresh = Database(url, pool_size=2)
    try:
        restarted = AppContext(fresh, app_context.keyring, app_context.policy, clock)
        assert await mailer(restarted, smtp).run_once() == 0
    finally:
        await fresh.close()
    assert len(smtp.inbox.messages) == 1


async def test_a_refreshed_secret_gets_no_further_warnings(
    app_context: AppContext, clock: FakeClock, smtp: SmtpServer
) -> None:
    name, _ = await create(app_context)
    worker = mailer(app_context, smtp)
    clock.advance(timedelta(days=336))
    assert await worker.run_once() == 1
    await SecretRotation(app_context).refresh(name, keep_existing=True)
    # The old secret's 7- and 1-day moments come and go: nothing is sent.
    for _ in range(30):
        clock.advance(timedelta(days=1))
        assert await worker.run_once() == 0
    # The new secret starts its own schedule: its 30-day warning comes
    # 335 days after the refresh.
    clock.advance(timedelta(days=305))
    assert await worker.run_once() == 1
    assert len(smtp.inbox.messages) == 2


async def test_a_pending_warning_of_a_replaced_secret_is_cancelled(
    app_context: AppContext, clock: FakeClock, smtp: SmtpServer
) -> None:
    name, _ = await create(app_context)
    worker = mailer(app_context, smtp)
    clock.advance(timedelta(days=336))
    await worker.schedule(clock())  # due, recorded, not yet sent
    await SecretRotation(app_context).refresh(name, keep_existing=True)
    assert await worker.run_once() == 0
    assert smtp.inbox.messages == []


async def test_a_deleted_configuration_gets_none(
    app_context: AppContext, clock: FakeClock, smtp: SmtpServer
) -> None:
    name, _ = await create(app_context)
    worker = mailer(app_context, smtp)
    clock.advance(timedelta(days=336))
    await worker.schedule(clock())
    await CallbackConfigs(app_context).delete(name)
    for _ in range(40):
        assert await worker.run_once() == 0
        clock.advance(timedelta(days=1))
    assert smtp.inbox.messages == []


async def test_a_failed_send_is_retried_with_backoff_and_not_lost(
    app_context: AppContext, clock: FakeClock, smtp: SmtpServer
) -> None:
    await create(app_context)
    worker = mailer(app_context, smtp)
    smtp.inbox.fail_next = 2
    clock.advance(timedelta(days=336))
    assert await worker.run_once() == 0  # 451: retry in 1 minute
    assert await worker.run_once() == 0  # not due yet: no attempt at all
    assert smtp.inbox.rejected == 1
    clock.advance(timedelta(minutes=1))
    assert await worker.run_once() == 0  # 451 again: retry in 2 minutes
    clock.advance(timedelta(minutes=1))
    assert await worker.run_once() == 0
    assert smtp.inbox.rejected == 2
    clock.advance(timedelta(minutes=1))
    assert await worker.run_once() == 1
    assert len(smtp.inbox.messages) == 1


async def test_an_unreachable_smtp_server_loses_nothing(
    app_context: AppContext, clock: FakeClock, smtp: SmtpServer
) -> None:
    await create(app_context)
    clock.advance(timedelta(days=336))
    down = SmtpServer("smtp://127.0.0.1:1", smtp.inbox)
    assert await mailer(app_context, down).run_once() == 0
    clock.advance(timedelta(minutes=5))
    assert await mailer(app_context, smtp).run_once() == 1


async def test_starttls_is_required_when_the_url_asks_and_the_password_never_logged(
    app_context: AppContext, clock: FakeClock, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    await create(app_context)
    clock.advance(timedelta(days=336))
    host = smtp.url.removeprefix("smtp://")
    # This catcher offers no STARTTLS: a URL asking for it must not fall back
    # to sending (and logging in) in plain text; the warning waits instead.
    insisting = SmtpServer(f"smtp://mailer:pw-never-logged@{host}?starttls=true", smtp.inbox)
    with caplog.at_level(logging.DEBUG):
        assert await mailer(app_context, insisting).run_once() == 0
    assert smtp.inbox.messages == []
    assert "retrying at" in caplog.text
    assert "pw-never-logged" not in caplog.text
    clock.advance(timedelta(minutes=1))
    assert await mailer(app_context, smtp).run_once() == 1


# aiosmtpd warns (rightly) about AUTH without TLS; this local test server has no certificate.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated")
async def test_credentials_in_the_smtp_url_are_used(
    app_context: AppContext, clock: FakeClock
) -> None:
    await create(app_context)
    clock.advance(timedelta(days=336))
    with smtp_server(credentials=("mailer@corp", "s3cret pass")) as server:
        host = server.url.removeprefix("smtp://")
        wrong = SmtpServer(f"smtp://mailer%40corp:nope@{host}", server.inbox)
        assert await mailer(app_context, wrong).run_once() == 0  # refused: retried later
        clock.advance(timedelta(minutes=1))
        right = SmtpServer(f"smtp://mailer%40corp:s3cret%20pass@{host}", server.inbox)
        assert await mailer(app_context, right).run_once() == 1
        assert len(server.inbox.messages) == 1


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A migrated, empty PostgreSQL database (this case is about SKIP LOCKED)."""
    require_postgres()
    url, name = await create_postgres_database()
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        yield url
    finally:
        await drop_postgres_database(name)


@pytest.mark.postgres
async def test_two_mailers_on_one_postgresql_send_each_warning_once(
    postgres_url: str, keyring: Keyring, clock: FakeClock, smtp: SmtpServer
) -> None:
    # Two mailers, each with its own connection pool, as two processes would.
    databases = [Database(postgres_url, pool_size=4) for _ in range(2)]
    try:
        contexts = [AppContext(db, keyring, Policy(), clock) for db in databases]
        for i in range(12):
            await create(contexts[0], f"ops{i}@example.com")
        workers = [mailer(ctx, smtp) for ctx in contexts]
        total = 0
        # 29 days, 6 days and half a day before expiry: one threshold each.
        for step in (timedelta(days=336), timedelta(days=23), timedelta(days=5, hours=12)):
            clock.advance(step)
            results = await asyncio.gather(*(w.run_once() for w in workers for _ in range(3)))
            total += sum(results)
        per_recipient: dict[str, int] = {}
        for rcpts in smtp.inbox.recipients:
            per_recipient[rcpts[0]] = per_recipient.get(rcpts[0], 0) + 1
        assert len(per_recipient) == 12
        assert set(per_recipient.values()) == {3}
        assert total == len(smtp.inbox.messages) == 36
    finally:
        for db in databases:
            await db.close()
