"""The expiry-warning schedule, message, SMTP URL and test-clock guard, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hookkeeper.service.app.clock_offset import CONFIRMATION, ClockOffsetError, clock_from_settings
from hookkeeper.service.app.context import system_clock
from hookkeeper.service.domain.expiry_warnings import Backoff, due_threshold
from hookkeeper.service.domain.names import ConfigName
from hookkeeper.service.mail.message import WarningFacts, compose, html_text, plain_text
from hookkeeper.service.mail.smtp import SmtpUrl, SmtpUrlError
from hookkeeper.service.settings import Settings

CREATED = datetime(2026, 1, 1, tzinfo=UTC)
EXPIRES = CREATED + timedelta(days=365)


def before(days: float) -> datetime:
    return EXPIRES - timedelta(days=days)


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (CREATED, None),
        (before(30) - timedelta(seconds=1), None),
        (before(30), 30),
        (before(20), 30),
        (before(7) - timedelta(seconds=1), 30),
        (before(7), 7),
        (before(1.5), 7),
        (before(1), 1),
        (EXPIRES - timedelta(seconds=1), 1),
        (EXPIRES, None),
        (EXPIRES + timedelta(days=3), None),
    ],
)
def test_due_threshold_follows_the_30_7_1_schedule(now: datetime, due: int | None) -> None:
    assert due_threshold(CREATED, EXPIRES, now) == due


def test_after_downtime_only_the_nearest_threshold_is_due() -> None:
    # Down from before the 30-day mark until 12 hours before expiry: the
    # 30- and 7-day moments passed unseen; only the 1-day warning is due.
    assert due_threshold(CREATED, EXPIRES, EXPIRES - timedelta(hours=12)) == 1
    assert due_threshold(CREATED, EXPIRES, before(3)) == 7


def test_thresholds_before_the_secret_existed_never_apply() -> None:
    created = EXPIRES - timedelta(days=10)
    assert due_threshold(created, EXPIRES, created) is None
    assert due_threshold(created, EXPIRES, before(8)) is None
    assert due_threshold(created, EXPIRES, before(7)) == 7


def test_backoff_doubles_up_to_the_cap_and_never_gives_up() -> None:
    backoff = Backoff(timedelta(seconds=30), timedelta(minutes=10))
    assert [backoff.delay(n).total_seconds() for n in range(1, 7)] == [
        30,
        60,
        120,
        240,
        480,
        600,
    ]
    assert backoff.delay(10_000) == timedelta(minutes=10)


FACTS = WarningFacts(
    name=ConfigName("acme-lodging", "1969081f-8380-4dbd-9a19-c26fc1747b06"),
    callback_url="https://hooks.example.com/in?a=1&b=<2>",
    contact_email="ops@example.com",
    expire_time=datetime(2027, 1, 1, 8, 30, tzinfo=UTC),
    threshold_days=7,
)


def test_message_names_the_configuration_expiry_and_how_to_refresh() -> None:
    message = compose(FACTS, "Hookkeeper <noreply@example.com>", CREATED)
    assert message["To"] == "ops@example.com"
    assert "7 days" in message["Subject"]
    assert FACTS.name.config_id in message["Subject"]
    for text in (plain_text(FACTS), html_text(FACTS)):
        assert FACTS.name.config_id in text
        assert "2027-01-01 08:30:00 UTC" in text
        assert "refreshNotificationCallbackConfigSecret" in text
    assert FACTS.callback_url in plain_text(FACTS)
    # HTML escapes what the partner typed.
    assert "b=&lt;2&gt;" in html_text(FACTS)
    assert "<2>" not in html_text(FACTS)
    types = [part.get_content_type() for part in message.iter_parts()]
    assert types == ["text/plain", "text/html"]


def test_smtp_url_forms() -> None:
    plain = SmtpUrl.parse("smtp://127.0.0.1:2525")
    assert (plain.host, plain.port, plain.start_tls, plain.use_tls) == (
        "127.0.0.1",
        2525,
        False,
        False,
    )
    assert plain.username is None
    submission = SmtpUrl.parse("smtp://user%40corp:p%40ss@mail.example.com:587?starttls=true")
    assert submission.start_tls
    assert (submission.username, submission.password) == ("user@corp", "p@ss")
    assert "p@ss" not in repr(submission)
    assert SmtpUrl.parse("smtps://mail.example.com").port == 465


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://mail.example.com", "scheme"),
        ("smtp://", "host"),
        ("smtp://h:notaport", "port"),
        ("smtp://h?starttls=maybe", "starttls"),
        ("smtp://h?tls=1", "unknown option"),
        ("smtps://h?starttls=true", "smtps"),
    ],
)
def test_bad_smtp_urls_are_refused_naming_the_problem(url: str, complaint: str) -> None:
    with pytest.raises(SmtpUrlError, match=complaint) as raised:
        SmtpUrl.parse(url.replace("smtp://h", "smtp://user:hunter2@h"))
    assert "hunter2" not in str(raised.value)


def test_the_test_clock_needs_both_settings() -> None:
    assert clock_from_settings(Settings()) is system_clock
    with pytest.raises(ClockOffsetError, match="test-only"):
        clock_from_settings(Settings(unsafe_clock_offset_seconds=86400))
    with pytest.raises(ClockOffsetError, match="exactly"):
        clock_from_settings(Settings(unsafe_test_clock="yes"))
    shifted = clock_from_settings(
        Settings(unsafe_clock_offset_seconds=86400, unsafe_test_clock=CONFIRMATION)
    )
    assert shifted() - system_clock() > timedelta(hours=23)
