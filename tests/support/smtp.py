"""A real SMTP server (aiosmtpd) in the test process that keeps what arrives."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.processes import free_port


@dataclass
class Inbox:
    """Messages received so far; ``fail_next`` answers that many with 451."""

    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    fail_next: int = 0
    rejected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """aiosmtpd hook: keeps the message, or refuses it while ``fail_next``."""
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                self.rejected += 1
                return "451 4.3.0 temporarily unavailable, try again later"
            parsed = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            self.messages.append(parsed)
            self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 20) -> list[EmailMessage]:
        """Blocks until at least ``count`` messages arrived; returns them."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} messages, got {len(self.messages)}")
            time.sleep(0.05)
        return list(self.messages)


@dataclass
class SmtpServer:
    """A running catcher: its URL and inbox."""

    url: str
    inbox: Inbox


@contextmanager
def smtp_server(credentials: tuple[str, str] | None = None) -> Iterator[SmtpServer]:
    """Starts aiosmtpd on a free port for the duration of the block; with
    ``credentials`` it requires AUTH with them (over plain TCP: a test only)."""
    inbox = Inbox()
    port = free_port()
    options: dict[str, Any] = {}
    if credentials is not None:

        def authenticate(
            _server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and (
                    data.login.decode(),
                    data.password.decode(),
                )
                == credentials
            )
            return AuthResult(success=ok, handled=False)

        options = {"authenticator": authenticate, "auth_require_tls": False, "auth_required": True}
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield SmtpServer(f"smtp://127.0.0.1:{port}", inbox)
    finally:
        controller.stop()


def body_text(message: EmailMessage, subtype: str) -> str:
    """The text of the ``text/<subtype>`` part."""
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    content = part.get_content()
    assert isinstance(content, str)
    return content
