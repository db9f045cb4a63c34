"""SMTP delivery through aiosmtplib, configured by one URL.

``smtp://[user:pass@]host[:port][?starttls=true]`` (STARTTLS on request; plain
for local catchers such as Mailpit) or ``smtps://...`` (implicit TLS, port
465 by default). The password never appears in a repr or a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SmtpUrlError(ValueError):
    """HOOKKEEPER_SMTP_URL cannot be used; the message names the problem."""


@dataclass(frozen=True)
class SmtpUrl:
    """Where and how to connect; ``password`` is kept out of the repr."""

    host: str
    port: int
    use_tls: bool
    start_tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> SmtpUrl:
        """Parses the URL; SmtpUrlError names what is wrong (never echoing it whole)."""
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"}:
            raise SmtpUrlError("HOOKKEEPER_SMTP_URL: scheme must be smtp or smtps")
        if not parts.hostname:
            raise SmtpUrlError("HOOKKEEPER_SMTP_URL: a host is required")
        try:
            port = parts.port
        except ValueError as error:
            raise SmtpUrlError("HOOKKEEPER_SMTP_URL: the port is not a number") from error
        query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"starttls"}
        if unknown:
            raise SmtpUrlError(f"HOOKKEEPER_SMTP_URL: unknown option {sorted(unknown)[0]!r}")
        starttls = query.get("starttls", "false")
        if starttls not in _TRUE | _FALSE:
            raise SmtpUrlError("HOOKKEEPER_SMTP_URL: starttls must be true or false")
        use_tls = parts.scheme == "smtps"
        start_tls = starttls in _TRUE
        if use_tls and start_tls:
            raise SmtpUrlError("HOOKKEEPER_SMTP_URL: smtps already uses TLS; drop starttls")
        return cls(
            host=parts.hostname,
            port=port or (465 if use_tls else 25),
            use_tls=use_tls,
            start_tls=start_tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class SmtpTransport:
    """Sends one message per connection (warnings are rare; no pool needed)."""

    def __init__(self, url: SmtpUrl, *, timeout: float = 30.0) -> None:
        self._url = url
        self._timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        """Sends ``message``; raises aiosmtplib.SMTPException or OSError on failure."""
        url = self._url
        await aiosmtplib.send(
            message,
            hostname=url.host,
            port=url.port,
            username=url.username,
            password=url.password,
            use_tls=url.use_tls,
            # False, not None: without ?starttls=true never upgrade on our own,
            # so a local catcher's self-made certificate cannot fail a send.
            start_tls=url.start_tls,
            timeout=self._timeout,
        )
