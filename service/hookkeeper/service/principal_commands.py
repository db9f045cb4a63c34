"""``hookkeeper principal create``: a new least-privilege principal's token
(printed once) and the TOML block to add to HOOKKEEPER_SERVICE_PRINCIPALS_FILE."""

from __future__ import annotations

import secrets

import click
import tomli_w

from hookkeeper.service.domain.principals import (
    Principal,
    PrincipalsError,
    parse_principals,
    token_sha256,
)


@click.group()
def principal() -> None:
    """Least-privilege callers of the gRPC API (docs/security.md)."""


@principal.command("create")
@click.argument("name")
@click.option(
    "--method",
    "methods",
    multiple=True,
    required=True,
    metavar="GLOB",
    help="Methods allowed, globs over package.Service/Method (repeatable).",
)
@click.option(
    "--partner",
    "partners",
    multiple=True,
    required=True,
    metavar="GLOB",
    help='Partner ids allowed, globs ("*" for every partner; repeatable).',
)
@click.option(
    "--tls-identity",
    default=None,
    metavar="NAME",
    help="Also recognise an mTLS client certificate with this SAN or CN.",
)
def create(
    name: str, methods: tuple[str, ...], partners: tuple[str, ...], tls_identity: str | None
) -> None:
    """Create principal NAME: print the [[principal]] block to append to the
    principals file (stdout), then its bearer token, shown only this once, on
    the last line. Only the token's SHA-256 goes into the file."""
    token = secrets.token_urlsafe(32)
    entry: dict[str, object] = {
        "name": name,
        "token_sha256": token_sha256(token),
        "methods": list(methods),
        "partners": list(partners),
    }
    if tls_identity:
        entry["tls_identity"] = tls_identity
    block = tomli_w.dumps({"principal": [entry]})
    try:
        parsed: list[Principal] = parse_principals(block, "principal")
    except PrincipalsError as error:
        raise click.BadParameter(str(error)) from None
    assert parsed[0].name == name
    click.echo("# Append to HOOKKEEPER_SERVICE_PRINCIPALS_FILE, then restart `hookkeeper serve`:")
    click.echo(block)
    click.echo("The token below is shown only this once; the file holds only its hash.", err=True)
    click.echo(token)
