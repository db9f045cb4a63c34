"""The e-mail telling a contact that its callback configuration was disabled:
why, since when, and how to enable it again. Plain text plus HTML; it never
carries a secret or an API key (the inputs below are all it is given)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from hookkeeper.service.domain.names import ConfigName


@dataclass(frozen=True)
class DisableFacts:
    """Everything the notice says."""

    name: ConfigName
    callback_url: str
    contact_email: str
    reason: str
    disable_time: datetime


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def subject(facts: DisableFacts) -> str:
    """The subject line."""
    return f"Webhook callback configuration {facts.name.config_id} was disabled"


def plain_text(facts: DisableFacts) -> str:
    """The text/plain part."""
    config_id = facts.name.config_id
    return f"""Hello,

notifications to one of your webhook callback configurations are paused: it
was disabled.

  Callback configuration ID: {config_id}
  Resource name:             {facts.name}
  Callback URL:              {facts.callback_url}
  Disabled at:               {_utc(facts.disable_time)}
  Reason:                    {facts.reason}

No notification is lost: those queued for it, and those of events published
while it is disabled, are kept, paused (they show in your delivery log).
Once your endpoint answers again, re-enable the configuration with the
enableNotificationCallbackConfig mutation and callbackConfigId "{config_id}"
(or the gRPC method CallbackConfigService.EnableCallbackConfig with name
"{facts.name}"): the paused notifications are then sent in the order they
were published, each with a fresh retry schedule.

This message is sent once per disablement.
"""


def html_text(facts: DisableFacts) -> str:
    """The text/html part (every value escaped)."""
    e = html.escape
    config_id = e(facts.name.config_id)
    rows = [
        ("Callback configuration ID", config_id),
        ("Resource name", e(str(facts.name))),
        ("Callback URL", e(facts.callback_url)),
        ("Disabled at", e(_utc(facts.disable_time))),
        ("Reason", e(facts.reason)),
    ]
    table = "\n".join(f"<tr><th align='left'>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"""<!doctype html>
<html><body>
<p>Hello,</p>
<p>notifications to one of your webhook callback configurations are paused: it was
<strong>disabled</strong>.</p>
<table>
{table}
</table>
<p>No notification is lost: those queued for it, and those of events published while it
is disabled, are kept, paused (they show in your delivery log). Once your endpoint
answers again, re-enable the configuration with the
<code>enableNotificationCallbackConfig</code> mutation and
<code>callbackConfigId: "{config_id}"</code> (or the gRPC method
<code>CallbackConfigService.EnableCallbackConfig</code>): the paused notifications are
then sent in the order they were published, each with a fresh retry schedule.</p>
<p>This message is sent once per disablement.</p>
</body></html>
"""


def compose(facts: DisableFacts, mail_from: str, now: datetime) -> EmailMessage:
    """The complete message, ready for SMTP."""
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = facts.contact_email
    message["Subject"] = subject(facts)
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = make_msgid(domain="hookkeeper.invalid")
    message.set_content(plain_text(facts))
    message.add_alternative(html_text(facts), subtype="html")
    return message
