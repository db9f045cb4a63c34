"""``hookkeeper partner …``: partner accounts and their gateway tokens.

Tokens are printed once, alone on the last line of stdout, and stored only as
a hash. Commands that take a token read it from stdin when given ``-``, so it
need not appear in shell history or the process list.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from hookkeeper.service import bootstrap
from hookkeeper.service.app.partners import Partners
from hookkeeper.service.domain.errors import DomainError
from hookkeeper.service.settings import Settings

T = TypeVar("T")


def _run(use: Callable[[Partners], Awaitable[T]]) -> T:
    async def run() -> T:
        ctx = bootstrap.build_context(Settings())
        try:
            return await use(Partners(ctx))
        finally:
            await ctx.database.close()

    try:
        return asyncio.run(run())
    except DomainError as error:
        raise click.ClickException(str(error)) from None


def _token_argument(value: str) -> str:
    token = sys.stdin.readline().strip() if value == "-" else value.strip()
    if not token:
        raise click.BadParameter("is empty", param_hint="TOKEN")
    return token


@click.group()
def partner() -> None:
    """Manage partner accounts and their bearer tokens for the GraphQL gateway."""


@partner.command("create")
@click.argument("name")
def create(name: str) -> None:
    """Create a partner named NAME; print its id, then its first token (last line)."""
    issued = _run(lambda partners: partners.create(name))
    click.echo(issued.partner.partner_id)
    click.echo("The token below is shown only this once; it is stored only as a hash.", err=True)
    click.echo(issued.token)


@partner.command("issue-token")
@click.argument("partner_id", metavar="PARTNER")
def issue_token(partner_id: str) -> None:
    """Issue another token for PARTNER (id or partners/{id}); token on the last line.

    Older tokens stay valid until revoked, so a partner can roll tokens
    without downtime: issue, switch, then revoke the old one.
    """
    issued = _run(lambda partners: partners.issue_token(partner_id))
    click.echo(issued.partner.partner_id)
    click.echo("The token below is shown only this once; it is stored only as a hash.", err=True)
    click.echo(issued.token)


@partner.command("revoke-token")
@click.argument("token", required=False)
@click.option(
    "--partner",
    "partner_id",
    metavar="PARTNER",
    help="Revoke every token of this partner (id or partners/{id}) instead of one token.",
)
def revoke_token(token: str | None, partner_id: str | None) -> None:
    """Revoke TOKEN (or `-` to read it from stdin), or every token of --partner.

    Every gateway hears of it through the service's revocation feed and
    stops accepting the token within moments, whatever its partner cache's
    lifetime (docs/gateway.md).
    """
    if (token is None) == (partner_id is None):
        raise click.UsageError("give either TOKEN (or -) or --partner PARTNER")
    if partner_id is not None:
        count = _run(lambda partners: partners.revoke_partner(partner_id))
        click.echo(f"revoked {count} token(s) of partner {partner_id}")
        return
    secret = _token_argument(token or "")
    if _run(lambda partners: partners.revoke_token(secret)) == 0:
        raise click.ClickException("no live token matches (unknown or already revoked)")
    click.echo("revoked 1 token")
