"""The ``hookkeeper`` command."""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import entry_points

import click

from hookkeeper.service import bootstrap, telemetry
from hookkeeper.service.app.clock_offset import clock_from_settings
from hookkeeper.service.app.context import AppContext
from hookkeeper.service.audit_commands import audit
from hookkeeper.service.crypto.keyring import generate_key_entry
from hookkeeper.service.dev_certs import tls
from hookkeeper.service.gauge_sampler import GaugeSampler
from hookkeeper.service.mail.setup import build_mailer
from hookkeeper.service.partner_commands import partner
from hookkeeper.service.principal_commands import principal
from hookkeeper.service.settings import Settings
from hookkeeper.service.store import migrate as migrations
from hookkeeper.service.supervisor import (
    Supervisor,
    attach_to_supervisor,
    python_command,
    resolve_workers,
)


def _setup_logging() -> None:
    settings = Settings()
    telemetry.setup_logging(settings.log_level, settings.log_format)


def _context(settings: Settings) -> AppContext:
    """The app context of a long-running command, with telemetry switched on
    as the OTEL_* variables say and the (test-only) clock offset applied."""
    telemetry.configure("hookkeeper")
    ctx = bootstrap.build_context(settings, clock=clock_from_settings(settings))
    telemetry.instrument_engine(ctx.database.engine.sync_engine)
    return ctx


@click.group()
def main() -> None:
    """Hookkeeper: webhook callback configurations and signing secrets."""
    _setup_logging()


_WORKERS_HELP = (
    "Processes sharing the work (default HOOKKEEPER_WORKERS, else 1; 0 = one per CPU). "
    "Above 1 this process supervises them: see docs/workers.md."
)


def _supervise(settings: Settings, command: str, count: int) -> None:
    """Runs ``count`` copies of ``hookkeeper COMMAND --workers 1`` and exits
    with the supervisor's code."""
    # Generated development files are made here, once, before any worker
    # could race another to create them.
    bootstrap.load_keyring(settings)
    if command == "serve":
        bootstrap.load_service_tokens(settings)
    code = Supervisor(
        python_command(command, "--workers", "1"),
        count,
        stop_timeout=settings.shutdown_grace_seconds + 20,
        name=f"{command} worker",
    ).run()
    raise SystemExit(code)


@main.command()
@click.option("--workers", type=click.IntRange(min=0), default=None, help=_WORKERS_HELP)
def serve(workers: int | None) -> None:
    """Serve the gRPC API until SIGTERM."""
    from hookkeeper.service.api.tls import InsecureListenError, TlsConfigError, check_plaintext
    from hookkeeper.service.app.audit import AuditTrail
    from hookkeeper.service.domain.principals import PrincipalsError
    from hookkeeper.service.server import security_from_settings, serve_until_signalled

    settings = Settings()
    try:
        security = security_from_settings(settings)
    except (TlsConfigError, PrincipalsError) as error:
        raise click.ClickException(str(error)) from None
    count = resolve_workers(settings.workers if workers is None else workers)
    if count > 1:
        if security.tls is None:  # refused once here, not by every worker in a loop
            try:
                check_plaintext(settings.grpc_listen, allow_plaintext=security.allow_plaintext)
            except InsecureListenError as error:
                raise click.ClickException(str(error)) from None
        _supervise(settings, "serve", count)
    attach_to_supervisor()
    ctx = _context(settings)
    tokens = bootstrap.load_service_tokens(settings)
    mailer = build_mailer(ctx, settings)
    if mailer is None:
        logging.getLogger(__name__).info(
            "HOOKKEEPER_SMTP_URL is not set: this process sends no expiry warnings"
        )
    from hookkeeper.service.delivery import runtime as delivery

    deliveries = delivery.build(ctx, settings, with_dispatcher=settings.dispatcher_enabled)
    try:
        asyncio.run(
            serve_until_signalled(
                ctx,
                settings.grpc_listen,
                tokens,
                settings.shutdown_grace_seconds,
                workers=[
                    *filter(None, [bootstrap.cache_worker(ctx, settings)]),
                    bootstrap.revocation_worker(ctx, settings),
                    *([mailer.run] if mailer else []),
                    deliveries.run,
                    GaugeSampler(ctx).run,  # returns at once when metrics are off
                    AuditTrail(ctx).run,
                ],
                notifications=deliveries.notifications,
                security=security,
                health_interval=settings.db_health_interval_seconds,
            )
        )
    except (InsecureListenError, TlsConfigError) as error:
        raise click.ClickException(str(error)) from None
    finally:
        telemetry.shutdown()


@main.command()
@click.option("--workers", type=click.IntRange(min=0), default=None, help=_WORKERS_HELP)
def dispatcher(workers: int | None) -> None:
    """Deliver queued notifications until SIGTERM (any number may share a database)."""
    from hookkeeper.service.delivery import runtime as delivery

    settings = Settings()
    count = resolve_workers(settings.workers if workers is None else workers)
    if count > 1:
        _supervise(settings, "dispatcher", count)
    attach_to_supervisor()
    ctx = _context(settings)
    deliveries = delivery.build(ctx, settings, with_dispatcher=True)
    try:
        factory = delivery.loop_factory(settings.dispatcher_event_loop)
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(delivery.run_until_signalled(deliveries, ctx))
    finally:
        telemetry.shutdown()


@main.command()
def mailer() -> None:
    """Send secret-expiry warning e-mails until SIGTERM (needs HOOKKEEPER_SMTP_URL)."""
    from hookkeeper.service.mail.setup import run_until_signalled

    settings = Settings()
    ctx = _context(settings)
    worker = build_mailer(ctx, settings)
    if worker is None:
        raise click.UsageError("HOOKKEEPER_SMTP_URL must be set to run the mailer")
    try:
        asyncio.run(run_until_signalled(ctx, worker))
    finally:
        telemetry.shutdown()


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
    from hookkeeper.service.app.key_rotation import rotate_keys

    async def run() -> int:
        ctx = bootstrap.build_context(Settings())
        try:
            return await rotate_keys(ctx)
        finally:
            await ctx.database.close()

    click.echo(f"resealed {asyncio.run(run())} values under the newest key")


# Partner accounts and tokens.
main.add_command(partner)
# Least-privilege principals and the audit trail (docs/security.md).
main.add_command(principal)
main.add_command(audit)
main.add_command(tls)


def _add_contributed_commands(group: click.Group) -> None:
    """Adds the commands other parts of Hookkeeper contribute through the
    ``hookkeeper.commands`` entry points (pyproject.toml): the gateway's
    ``gateway`` and ``make run``'s all-in-one ``dev`` (docs/gateway.md). The
    service never imports the gateway, which depends on it."""
    for entry_point in entry_points(group="hookkeeper.commands"):
        command = entry_point.load()
        if not isinstance(command, click.Command):
            raise TypeError(f"entry point {entry_point.value} is not a click command")
        group.add_command(command, entry_point.name)


_add_contributed_commands(main)
