"""The expiry-warning e-mail: plain text plus HTML.

Names the configuration (resource name, id, callback URL), the expiry time in
UTC and how to refresh. It never carries a secret or an API key: the inputs
below are all it is given.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from hookkeeper.service.domain.expiry_warnings import days_left_text
from hookkeeper.service.domain.names import ConfigName


@dataclass(frozen=True)
class WarningFacts:
    """Everything a warning says."""

    name: ConfigName
    callback_url: str
    contact_email: str
    expire_time: datetime
    threshold_days: int


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def subject(facts: WarningFacts) -> str:
    """The subject line."""
    return (
        f"Webhook signing secret of callback configuration {facts.name.config_id} "
        f"expires in {days_left_text(facts.threshold_days)}"
    )


def plain_text(facts: WarningFacts) -> str:
    """The text/plain part."""
    config_id = facts.name.config_id
    return f"""Hello,

the signing secret of one of your webhook callback configurations expires in
{days_left_text(facts.threshold_days)}.

  Callback configuration ID: {config_id}
  Resource name:             {facts.name}
  Callback URL:              {facts.callback_url}
  Secret expires at:         {_utc(facts.expire_time)}

Once the secret expires, notifications to this callback URL fail until you
refresh it. To refresh, call the refreshNotificationCallbackConfigSecret
mutation with callbackConfigId "{config_id}" (or the gRPC method
SecretRotationService.RefreshSecret with name "{facts.name}").
Set keepExistingSecretActive to true to keep the current secret signing for
up to three more days while you switch your verification over.

This message is sent 30, 7 and 1 days before the expiry; refreshing the
secret stops the warnings for the old one.
"""


def html_text(facts: WarningFacts) -> str:
    """The text/html part (every value escaped)."""
    e = html.escape
    config_id = e(facts.name.config_id)
    rows = [
        ("Callback configuration ID", config_id),
        ("Resource name", e(str(facts.name))),
        ("Callback URL", e(facts.callback_url)),
        ("Secret expires at", e(_utc(facts.expire_time))),
    ]
    table = "\n".join(f"<tr><th align='left'>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"""<!doctype html>
<html><body>
<p>Hello,</p>
<p>the signing secret of one of your webhook callback configurations expires in
<strong>{e(days_left_text(facts.threshold_days))}</strong>.</p>
<table>
{table}
</table>
<p>Once the secret expires, notifications to this callback URL fail until you refresh it.
To refresh, call the <code>refreshNotificationCallbackConfigSecret</code> mutation with
<code>callbackConfigId: "{config_id}"</code> (or the gRPC method
<code>SecretRotationService.RefreshSecret</code>).
Set <code>keepExistingSecretActive</code> to <code>true</code> to keep the current secret
signing for up to three more days while you switch your verification over.</p>
<p>This message is sent 30, 7 and 1 days before the expiry; refreshing the secret stops
the warnings for the old one.</p>
</body></html>
"""


def compose(facts: WarningFacts, mail_from: str, now: datetime) -> EmailMessage:
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
