"""``hookkeeper gateway`` and ``hookkeeper dev`` (service + gateway together
with a ready development partner token, for ``make run``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request

import click

from hookkeeper.service import bootstrap
from hookkeeper.service.app.partners import Partners
from hookkeeper.service.domain.errors import NotFound
from hookkeeper.service.settings import Settings
from hookkeeper.service.store import migrate as migrations

DEV_PARTNER_NAME = "Development partner"
_HOOKKEEPER = [
    sys.executable,
    "-c",
    "import sys; from hookkeeper.service.cli import main; sys.exit(main())",
]


@click.command()
def gateway() -> None:
    """Serve the public GraphQL API (POST /graphql; GraphiQL on GET) until SIGTERM."""
    from hookkeeper.gateway.server import serve

    serve(Settings())


async def _dev_token(settings: Settings) -> str:
    """The development partner's token from var/, created on first use."""
    path = settings.var_dir / "dev-partner-token"
    ctx = bootstrap.build_context(settings)
    partners = Partners(ctx)
    try:
        if path.exists():
            token = path.read_text().strip()
            try:
                await partners.authenticate(token)
                return token
            except NotFound:
                path.unlink()  # revoked or from another database: issue a new one
        issued = await partners.create(DEV_PARTNER_NAME)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(issued.token)
        return issued.token
    finally:
        await ctx.database.close()


def _wait_http(url: str, child: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise click.ClickException("the gateway exited during start-up; see its log above")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own http URL
                return
        except OSError:
            time.sleep(0.2)
    raise click.ClickException(f"the gateway did not answer at {url}")


def _wait_grpc(target: str, child: subprocess.Popen[bytes], timeout: float = 30) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise click.ClickException("the service exited during start-up; see its log above")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.2)
    raise click.ClickException(f"the service did not answer at {target}")


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


@click.command()
def dev() -> None:
    """Development: migrate, start the gRPC service and the gateway, print a
    partner token for GraphiQL, and stop both on Ctrl-C. Not for production."""
    from hookkeeper.gateway.server import split_listen

    settings = Settings()
    migrations.upgrade(settings.resolved_database_url())
    token = asyncio.run(_dev_token(settings))
    host, port = split_listen(settings.gateway_listen)
    # The gateway calls the service this process starts.
    env = {**os.environ, "HOOKKEEPER_GATEWAY_GRPC_TARGET": settings.grpc_listen}
    children: list[subprocess.Popen[bytes]] = []
    stop_requested = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        # One worker, whatever HOOKKEEPER_WORKERS says: development needs no more.
        children.append(subprocess.Popen([*_HOOKKEEPER, "serve", "--workers", "1"], env=env))
        _wait_grpc(settings.grpc_listen, children[0])
        children.append(subprocess.Popen([*_HOOKKEEPER, "gateway"], env=env))
        url = f"http://{host}:{port}/graphql"
        _wait_http(f"http://{host}:{port}/healthz", children[1])
        click.echo(
            "\n"
            f"  gRPC service : {settings.grpc_listen}\n"
            f"  GraphQL      : {url}  (open it in a browser for GraphiQL)\n"
            f"  dev partner  : {DEV_PARTNER_NAME} (token kept in "
            f"{settings.var_dir / 'dev-partner-token'})\n"
            "  In GraphiQL's Headers tab:\n"
            f'    {{"Authorization": "Bearer {token}"}}\n'
            "  Ctrl-C stops both.\n"
            f"{token}",
        )
        while not stop_requested and all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        _stop(children)
