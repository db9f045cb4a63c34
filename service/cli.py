"""The ``hookkeeper`` command."""

from __future__ import annotations

import asyncio
import logging

import click

from service import bootstrap
from service.crypto.keyring import generate_key_entry
from service.settings import Settings
from service.store import migrate as migrations


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


@click.group()
def main() -> None:
    """Hookkeeper: webhook callback configurations and signing secrets."""
    _setup_logging()


@main.command()
def serve() -> None:
    """Serve the gRPC API until SIGTERM."""
    from service.server import serve_until_signalled

    settings = Settings()
    ctx = bootstrap.build_context(settings)
    tokens = bootstrap.load_service_tokens(settings)
    asyncio.run(
        serve_until_signalled(ctx, settings.grpc_listen, tokens, settings.shutdown_grace_seconds)
    )


@main.command()
def migrate() -> None:
    """Bring the database schema up to date (safe to repeat)."""
    settings = Settings()
    migrations.upgrade(settings.resolved_database_url())
    click.echo("database is up to date")


@main.group()
def keys() -> None:
    """Manage the master keys that encrypt secrets and API keys at rest."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new key entry to append to HOOKKEEPER_MASTER_KEYS."""
    click.echo(generate_key_entry())


@keys.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored value under the newest key (online, repeatable)."""
    from service.app.key_rotation import rotate_keys

    async def run() -> int:
        ctx = bootstrap.build_context(Settings())
        try:
            return await rotate_keys(ctx)
        finally:
            await ctx.database.close()

    click.echo(f"resealed {asyncio.run(run())} values under the newest key")
