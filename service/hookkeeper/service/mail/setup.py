"""Builds the expiry mailer from Settings."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

from hookkeeper.service.app.context import AppContext
from hookkeeper.service.domain.expiry_warnings import Backoff
from hookkeeper.service.mail.smtp import SmtpTransport, SmtpUrl
from hookkeeper.service.mail.worker import ExpiryMailer
from hookkeeper.service.settings import Settings


def build_mailer(ctx: AppContext, settings: Settings) -> ExpiryMailer | None:
    """The mailer, or None when HOOKKEEPER_SMTP_URL is not set.

    Raises SmtpUrlError (naming the problem, never echoing the URL) when the
    URL cannot be used.
    """
    if settings.smtp_url is None or not settings.smtp_url.get_secret_value():
        return None
    url = SmtpUrl.parse(settings.smtp_url.get_secret_value())
    timeout = settings.smtp_timeout_seconds
    return ExpiryMailer(
        ctx,
        SmtpTransport(url, timeout=timeout),
        settings.mail_from,
        poll_seconds=settings.mailer_poll_seconds,
        backoff=Backoff(
            timedelta(seconds=settings.mailer_retry_base_seconds),
            timedelta(seconds=settings.mailer_retry_max_seconds),
        ),
        # Longer than any send can take, so a lease never runs out mid-send.
        lease=timedelta(seconds=max(60.0, 4 * timeout)),
    )


async def run_until_signalled(ctx: AppContext, mailer: ExpiryMailer) -> None:
    """Runs the mailer alone until SIGTERM or SIGINT (``hookkeeper mailer``)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await mailer.run(stop)
    finally:
        await ctx.database.close()
