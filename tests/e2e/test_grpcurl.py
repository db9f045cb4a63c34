"""End to end: the real ``hookkeeper`` server process, driven only by the real
grpcurl binary through server reflection (no proto files), once on the
embedded SQLite default and once on a fresh PostgreSQL database.

One database and one long-lived server per database kind are shared by the
module's tests (each test uses its own partner), to keep the runtime small.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import grpc
import pytest
from sqlalchemy.engine import make_url

from tests.support.grpcurl import CONFIGS, SECRETS, Grpcurl, Reply, parse
from tests.support.postgres import POSTGRES_ADMIN_URL, require_postgres
from tests.support.postgres import create_database as create_postgres_database
from tests.support.postgres import drop_database as drop_postgres_database
from tests.support.processes import (
    Process,
    base_env,
    free_port,
    run_cli,
    start,
    wait_for_grpc_health,
)

pytestmark = pytest.mark.e2e

T = TypeVar("T")
TOKEN = "e2e-token-" + "a" * 24
OTHER_TOKEN = "e2e-other-" + "b" * 24
PAYLOAD = b'{"eventType":"RESERVATION_CREATED","id":"r-1","note":"caf\xc3\xa9"}'


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine on its own loop in a worker thread, so a sync fixture
    never disturbs the event loop pytest-asyncio keeps for the session."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class Backend:
    """A migrated database of one kind and the environment that reaches it."""

    kind: str
    env: dict[str, str]
    tmp: Path
    postgres_database: str | None

    @property
    def sqlite_file(self) -> Path:
        """The embedded default database file (SQLite only)."""
        return Path(self.env["HOOKKEEPER_VAR_DIR"]) / "hookkeeper.db"

    def serve(self, name: str, **extra: str) -> tuple[Process, Grpcurl]:
        """Starts ``hookkeeper serve`` on a free port; waits until it is healthy."""
        address = f"127.0.0.1:{free_port()}"
        env = {**self.env, "HOOKKEEPER_GRPC_LISTEN": address, **extra}
        process = start(["serve"], env, self.tmp / f"{name}.log")
        try:
            wait_for_grpc_health(address)
        except TimeoutError:
            process.kill()
            raise AssertionError(f"server did not start:\n{process.output()}") from None
        return process, Grpcurl(address, TOKEN)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """A fresh, migrated database: the embedded SQLite default under a temp
    HOOKKEEPER_VAR_DIR, or a new PostgreSQL database dropped afterwards."""
    kind: str = request.param
    tmp = tmp_path_factory.mktemp(f"e2e-{kind}")
    master_keys = run_cli(["keys", "generate"], base_env({})).strip()
    env = base_env(
        {
            "HOOKKEEPER_VAR_DIR": str(tmp / "var"),
            "HOOKKEEPER_MASTER_KEYS": master_keys,
            "HOOKKEEPER_SERVICE_TOKENS": f"e2e={TOKEN},other={OTHER_TOKEN}",
        }
    )
    database = None
    if kind == "postgresql":
        require_postgres()
        url, database = _run_async(create_postgres_database())
        env["HOOKKEEPER_DATABASE_URL"] = url
    try:
        run_cli(["migrate"], env)
        yield Backend(kind, env, tmp, database)
    finally:
        if database is not None:
            _run_async(drop_postgres_database(database))


@pytest.fixture(scope="module")
def server(backend: Backend) -> Iterator[tuple[Process, Grpcurl]]:
    """The long-lived server of the module, one-year secrets."""
    process, client = backend.serve("server")
    yield process, client
    code = process.terminate()
    assert code == 0, process.output()


@pytest.fixture
def grpcurl(server: tuple[Process, Grpcurl]) -> Grpcurl:
    """grpcurl against the long-lived server, with the valid token."""
    return server[1]


def _partner() -> str:
    return f"partners/p-{uuid.uuid4().hex[:10]}"


def _time(value: str) -> datetime:
    """A protobuf JSON timestamp (up to nanoseconds) as an aware datetime."""
    match = re.fullmatch(r"(.+?)(?:\.(\d+))?Z", value)
    assert match, value
    moment = datetime.fromisoformat(match[1]).replace(tzinfo=UTC)
    return moment + timedelta(microseconds=int((match[2] or "0").ljust(6, "0")[:6]))


def _config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "callback_url": "https://hooks.example.com/expedia",
        "api_key": "api-key-" + uuid.uuid4().hex,
        "contact_email": "ops@example.com",
    }
    config.update(overrides)
    return config


def _create(client: Grpcurl, parent: str, **overrides: Any) -> dict[str, Any]:
    return client.ok(
        f"{CONFIGS}/CreateCallbackConfig",
        {"parent": parent, "callback_config": _config(**overrides)},
    )


def _hmac(secret: str, timestamp: str, payload: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + payload, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def _sign(client: Grpcurl, name: str, timestamp: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"name": name, "payload": base64.b64encode(PAYLOAD).decode()}
    if timestamp is not None:
        request["timestamp"] = timestamp
    return client.ok(f"{SECRETS}/SignNotification", request)


def _expected_header(secrets_newest_first: list[str], timestamp: str) -> str:
    return "sha256=" + ",".join(_hmac(s, timestamp, PAYLOAD) for s in secrets_newest_first)


# --- reflection and health -------------------------------------------------


def test_list_shows_every_service(grpcurl: Grpcurl) -> None:
    services = set(grpcurl.run("list").split())
    assert services >= {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        CONFIGS,
        SECRETS,
    }
    methods = grpcurl.run("list", SECRETS).split()
    assert methods == [
        f"{SECRETS}.RefreshSecret",
        f"{SECRETS}.RevokePreviousSecret",
        f"{SECRETS}.SignNotification",
    ]


def test_describe_shows_rpcs_fields_and_comments(grpcurl: Grpcurl) -> None:
    service = grpcurl.run("describe", CONFIGS)
    for rpc in ("Create", "Get", "Update", "Delete"):
        assert (
            f"rpc {rpc}CallbackConfig ( .hookkeeper.notifications.v1.{rpc}CallbackConfigRequest )"
            in service
        )
    assert "rpc ListCallbackConfigs" in service
    message = grpcurl.run("describe", "hookkeeper.notifications.v1.CallbackConfig")
    assert "string callback_url = 2" in message
    assert "optional int32 request_timeout_seconds = 5" in message
    # The proto comments travel with the reflected descriptors.
    assert "// Absolute URL (RFC 3986) that notifications are POSTed to." in message
    assert "// Seconds to wait for the partner's answer" in message
    rpc = grpcurl.run("describe", f"{SECRETS}.SignNotification")
    assert "x-eg-notification-signature-v2" in rpc


def test_health_check_needs_no_token(grpcurl: Grpcurl) -> None:
    for service in ("", CONFIGS, SECRETS):
        reply = grpcurl.call("grpc.health.v1.Health/Check", {"service": service}, token=None)
        assert reply.code is grpc.StatusCode.OK
        assert reply.body == {"status": "SERVING"}


# --- the lifecycle of a configuration ---------------------------------------


def test_create_get_list_update_refresh_sign_delete(
    grpcurl: Grpcurl, server: tuple[Process, Grpcurl]
) -> None:
    parent = _partner()
    api_key = "api-key-" + uuid.uuid4().hex
    before = datetime.now(UTC)
    created = _create(grpcurl, parent, api_key=api_key)
    config, secret = created["callbackConfig"], created["secret"]
    name = config["name"]
    assert re.fullmatch(rf"{parent}/callbackConfigs/[0-9a-f-]{{36}}", name)
    assert len(secret) == 24
    assert config["callbackUrl"] == "https://hooks.example.com/expedia"
    assert config["contactEmail"] == "ops@example.com"
    assert config["requestTimeoutSeconds"] == 60
    assert config.get("apiKey", "") == ""
    create_time = _time(config["createTime"])
    assert before - timedelta(seconds=5) <= create_time <= datetime.now(UTC) + timedelta(seconds=5)
    validity = _time(config["secretExpireTime"]) - create_time
    assert abs(validity - timedelta(days=365)) < timedelta(seconds=1)

    # Get answers the same view, never the API key.
    got = grpcurl.ok(f"{CONFIGS}/GetCallbackConfig", {"name": name})["callbackConfig"]
    assert got == config

    # List, a page at a time, oldest first.
    second = _create(grpcurl, parent, request_timeout_seconds=15)["callbackConfig"]
    page1 = grpcurl.ok(f"{CONFIGS}/ListCallbackConfigs", {"parent": parent, "page_size": 1})
    assert [c["name"] for c in page1["callbackConfigs"]] == [name]
    assert page1["nextPageToken"]
    page2 = grpcurl.ok(
        f"{CONFIGS}/ListCallbackConfigs",
        {"parent": parent, "page_size": 1, "page_token": page1["nextPageToken"]},
    )
    assert [c["name"] for c in page2["callbackConfigs"]] == [second["name"]]
    assert page2["callbackConfigs"][0]["requestTimeoutSeconds"] == 15
    assert page2["nextPageToken"] == ""
    everything = grpcurl.ok(f"{CONFIGS}/ListCallbackConfigs", {"parent": parent})
    assert [c["name"] for c in everything["callbackConfigs"]] == [name, second["name"]]
    assert everything["nextPageToken"] == ""

    # Update with a mask: only the masked field changes, even if others are given.
    masked = grpcurl.ok(
        f"{CONFIGS}/UpdateCallbackConfig",
        {
            "callback_config": {
                "name": name,
                "contact_email": "new-ops@example.com",
                "callback_url": "https://ignored.example.com/",
            },
            "update_mask": {"paths": ["contact_email"]},
        },
    )["callbackConfig"]
    assert masked["contactEmail"] == "new-ops@example.com"
    assert masked["callbackUrl"] == "https://hooks.example.com/expedia"
    assert _time(masked["updateTime"]) >= _time(config["updateTime"])
    assert masked["secretExpireTime"] == config["secretExpireTime"]

    # Update without a mask: every field given a non-default value changes.
    unmasked = grpcurl.ok(
        f"{CONFIGS}/UpdateCallbackConfig",
        {
            "callback_config": {
                "name": name,
                "callback_url": "https://hooks2.example.com/cb",
                "request_timeout_seconds": 30,
            }
        },
    )["callbackConfig"]
    assert unmasked["callbackUrl"] == "https://hooks2.example.com/cb"
    assert unmasked["requestTimeoutSeconds"] == 30
    assert unmasked["contactEmail"] == "new-ops@example.com"
    assert grpcurl.ok(f"{CONFIGS}/GetCallbackConfig", {"name": name})["callbackConfig"] == (
        unmasked
    )

    # Sign at a given time: one secret, the one Create returned.
    signed = _sign(grpcurl, name, "2026-03-01T10:20:30.456Z")
    assert signed["timestamp"] == "1772360430456"
    assert signed["signature"] == _expected_header([secret], "1772360430456")
    # Sign at the server's time.
    now_ms = int(time.time() * 1000)
    signed = _sign(grpcurl, name)
    assert abs(int(signed["timestamp"]) - now_ms) < 60_000
    assert signed["signature"] == _expected_header([secret], signed["timestamp"])

    # Refresh keeping the existing secret: both sign, newest first.
    refreshed = grpcurl.ok(
        f"{SECRETS}/RefreshSecret", {"name": name, "keep_existing_secret_active": True}
    )
    newer = refreshed["secret"]
    assert refreshed["name"] == name
    assert len(newer) == 24
    assert newer != secret
    refresh_time = datetime.now(UTC)
    overlap_end = _time(refreshed["previousSecretExpireTime"])
    assert abs(overlap_end - (refresh_time + timedelta(days=3))) < timedelta(minutes=1)
    assert abs(
        _time(refreshed["secretExpireTime"]) - (refresh_time + timedelta(days=365))
    ) < timedelta(minutes=1)
    signed = _sign(grpcurl, name)
    assert signed["signature"] == _expected_header([newer, secret], signed["timestamp"])
    got = grpcurl.ok(f"{CONFIGS}/GetCallbackConfig", {"name": name})["callbackConfig"]
    assert got["secretExpireTime"] == refreshed["secretExpireTime"]

    # Refresh without keeping: the new secret signs alone, at once.
    replaced = grpcurl.ok(f"{SECRETS}/RefreshSecret", {"name": name})
    newest = replaced["secret"]
    assert newest not in (secret, newer)
    assert abs(_time(replaced["previousSecretExpireTime"]) - datetime.now(UTC)) < timedelta(
        minutes=1
    )
    signed = _sign(grpcurl, name)
    assert signed["signature"] == _expected_header([newest], signed["timestamp"])

    # Delete; then it is gone for every RPC.
    deleted = grpcurl.ok(f"{CONFIGS}/DeleteCallbackConfig", {"name": name})
    assert deleted == {"name": name}
    for method, request in (
        (f"{CONFIGS}/GetCallbackConfig", {"name": name}),
        (f"{CONFIGS}/DeleteCallbackConfig", {"name": name}),
        (f"{SECRETS}/RefreshSecret", {"name": name}),
        (f"{SECRETS}/SignNotification", {"name": name, "payload": "e30="}),
    ):
        reply = grpcurl.call(method, request)
        assert reply.code is grpc.StatusCode.NOT_FOUND, (method, reply)
    remaining = grpcurl.ok(f"{CONFIGS}/ListCallbackConfigs", {"parent": parent})
    assert [c["name"] for c in remaining["callbackConfigs"]] == [second["name"]]

    # Nothing secret reached the server's log.
    log = server[0].output()
    for value in (api_key, secret, newer, newest, TOKEN):
        assert value not in log


def test_api_keys_of_64_kib_are_accepted(grpcurl: Grpcurl) -> None:
    created = _create(grpcurl, _partner(), api_key="é" * 32 * 1024)
    assert created["callbackConfig"]["name"]


# --- error codes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "missing bearer token"),
        ("wrong-token-" + "c" * 24, "not valid"),
    ],
)
def test_unauthenticated_without_a_valid_token(
    grpcurl: Grpcurl, token: str | None, message: str
) -> None:
    parent = _partner()
    for method, request in (
        (f"{CONFIGS}/CreateCallbackConfig", {"parent": parent, "callback_config": _config()}),
        (f"{CONFIGS}/ListCallbackConfigs", {"parent": parent}),
        (f"{SECRETS}/SignNotification", {"name": f"{parent}/callbackConfigs/{uuid.uuid4()}"}),
    ):
        reply = grpcurl.call(method, request, token=token)
        assert reply.code is grpc.StatusCode.UNAUTHENTICATED, (method, reply)
        assert message in reply.message
    # Nothing was created by the refused Create.
    listed = grpcurl.ok(f"{CONFIGS}/ListCallbackConfigs", {"parent": parent})
    assert listed["callbackConfigs"] == []


def test_a_second_service_token_is_accepted(grpcurl: Grpcurl) -> None:
    reply = grpcurl.call(
        f"{CONFIGS}/ListCallbackConfigs", {"parent": _partner()}, token=OTHER_TOKEN
    )
    assert reply.code is grpc.StatusCode.OK


def test_invalid_create_names_every_bad_field_and_stores_nothing(grpcurl: Grpcurl) -> None:
    parent = _partner()
    reply = grpcurl.call(
        f"{CONFIGS}/CreateCallbackConfig",
        {
            "parent": parent,
            "callback_config": {
                # Plain http is refused while insecure callbacks are not allowed.
                "callback_url": "http://hooks.example.com/cb",
                "api_key": "",
                "contact_email": "not an address",
                "request_timeout_seconds": 61,
            },
        },
    )
    assert reply.code is grpc.StatusCode.INVALID_ARGUMENT
    violations = reply.field_violations()
    assert set(violations) == {
        "callback_config.callback_url",
        "callback_config.api_key",
        "callback_config.contact_email",
        "callback_config.request_timeout_seconds",
    }
    assert all(violations.values())
    for field in violations:
        assert field in reply.message
    listed = grpcurl.ok(f"{CONFIGS}/ListCallbackConfigs", {"parent": parent})
    assert listed["callbackConfigs"] == []


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"parent": "partner/x", "callback_config": _config()}, "parent"),
        ({"parent": "partners/x"}, "callback_config"),
        (
            {"parent": "partners/x", "callback_config": _config(callback_url="/relative")},
            "callback_config.callback_url",
        ),
        (
            {
                "parent": "partners/x",
                "callback_config": _config(callback_url="https://127.0.0.1/cb"),
            },
            "callback_config.callback_url",
        ),
        (
            {"parent": "partners/x", "callback_config": _config(request_timeout_seconds=0)},
            "callback_config.request_timeout_seconds",
        ),
    ],
)
def test_invalid_create_fields(grpcurl: Grpcurl, request_body: dict[str, Any], field: str) -> None:
    reply = grpcurl.call(f"{CONFIGS}/CreateCallbackConfig", request_body)
    assert reply.code is grpc.StatusCode.INVALID_ARGUMENT
    assert list(reply.field_violations()) == [field]


def test_invalid_names_and_updates(grpcurl: Grpcurl) -> None:
    name = _create(grpcurl, _partner())["callbackConfig"]["name"]
    cases: list[tuple[str, dict[str, Any], set[str]]] = [
        (
            f"{CONFIGS}/GetCallbackConfig",
            {"name": "partners/x/callbackConfigs/not-a-uuid"},
            {"name"},
        ),
        (f"{SECRETS}/RefreshSecret", {"name": "callbackConfigs/x"}, {"name"}),
        (f"{SECRETS}/SignNotification", {"name": ""}, {"name"}),
        (
            f"{CONFIGS}/UpdateCallbackConfig",
            {
                "callback_config": {
                    "name": name,
                    "callback_url": "ftp://example.com/",
                    "contact_email": "@example.com",
                },
                "update_mask": {"paths": ["callback_url", "contact_email"]},
            },
            {"callback_config.callback_url", "callback_config.contact_email"},
        ),
        (
            f"{CONFIGS}/UpdateCallbackConfig",
            {
                "callback_config": {"name": name, "api_key": ""},
                "update_mask": {"paths": ["api_key"]},
            },
            {"callback_config.api_key"},
        ),
    ]
    for method, request, fields in cases:
        reply = grpcurl.call(method, request)
        assert reply.code is grpc.StatusCode.INVALID_ARGUMENT, (method, request, reply)
        assert set(reply.field_violations()) == fields, (method, reply)
    # The refused updates changed nothing.
    got = grpcurl.ok(f"{CONFIGS}/GetCallbackConfig", {"name": name})["callbackConfig"]
    assert got["callbackUrl"] == "https://hooks.example.com/expedia"
    assert got["contactEmail"] == "ops@example.com"


def test_another_partners_configuration_is_not_found_like_a_missing_one(
    grpcurl: Grpcurl,
) -> None:
    owner, intruder = _partner(), _partner()
    config_id = _create(grpcurl, owner)["callbackConfig"]["name"].rsplit("/", 1)[1]
    foreign = f"{intruder}/callbackConfigs/{config_id}"
    missing = f"{owner}/callbackConfigs/{uuid.uuid4()}"
    for method, extra in (
        (f"{CONFIGS}/GetCallbackConfig", {}),
        (f"{CONFIGS}/DeleteCallbackConfig", {}),
        (f"{SECRETS}/RefreshSecret", {"keep_existing_secret_active": True}),
        (f"{SECRETS}/SignNotification", {"payload": "e30="}),
    ):
        answers: list[Reply] = [
            grpcurl.call(method, {"name": n, **extra}) for n in (foreign, missing)
        ]
        for reply, asked in zip(answers, (foreign, missing), strict=True):
            assert reply.code is grpc.StatusCode.NOT_FOUND, (method, reply)
            # Same shape: only the name that was asked for differs.
            shape = {**reply.body, "message": reply.message.replace(asked, "<name>")}
            assert shape == {
                "code": grpc.StatusCode.NOT_FOUND.value[0],
                "message": "<name> not found",
                "details": [],
            }
    foreign_update = grpcurl.call(
        f"{CONFIGS}/UpdateCallbackConfig",
        {"callback_config": {"name": foreign, "contact_email": "x@example.com"}},
    )
    assert foreign_update.code is grpc.StatusCode.NOT_FOUND
    # The owner still has it, unchanged.
    got = grpcurl.ok(
        f"{CONFIGS}/GetCallbackConfig", {"name": f"{owner}/callbackConfigs/{config_id}"}
    )
    assert got["callbackConfig"]["contactEmail"] == "ops@example.com"
    assert grpcurl.ok(f"{CONFIGS}/ListCallbackConfigs", {"parent": intruder}) == {
        "callbackConfigs": [],
        "nextPageToken": "",
    }


def test_expired_secret_refuses_keep_existing_and_signing(backend: Backend) -> None:
    # 0.00002 days is 1.728 s: the secret expires while the test waits.
    process, client = backend.serve("expiring", HOOKKEEPER_SECRET_VALIDITY_DAYS="0.00002")
    try:
        config = _create(client, _partner())["callbackConfig"]
        name, expires = config["name"], _time(config["secretExpireTime"])
        assert expires - _time(config["createTime"]) < timedelta(seconds=2)
        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.3)

        refused = client.call(
            f"{SECRETS}/RefreshSecret", {"name": name, "keep_existing_secret_active": True}
        )
        assert refused.code is grpc.StatusCode.FAILED_PRECONDITION, refused
        assert "expired" in refused.message
        unsigned = client.call(f"{SECRETS}/SignNotification", {"name": name, "payload": "e30="})
        assert unsigned.code is grpc.StatusCode.FAILED_PRECONDITION, unsigned
        assert "expired" in unsigned.message
        # A plain refresh revives it (its new secret is short-lived too).
        revived = client.ok(f"{SECRETS}/RefreshSecret", {"name": name})
        assert _time(revived["secretExpireTime"]) > expires
    finally:
        assert process.terminate() == 0, process.output()


# --- graceful shutdown ---------------------------------------------------------


async def _hold_write_lock(backend: Backend) -> Any:
    """Blocks the server's writes until released; returns the handle to release."""
    if backend.kind == "sqlite":
        conn = sqlite3.connect(backend.sqlite_file, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        return conn
    url = make_url(POSTGRES_ADMIN_URL).set(database=backend.postgres_database)
    pg = await asyncpg.connect(url.render_as_string(hide_password=False))
    tx = pg.transaction()
    await tx.start()
    await pg.execute("LOCK TABLE callback_configs IN SHARE MODE")
    return (pg, tx)


async def _lock_waiters(backend: Backend) -> int:
    """Server sessions waiting on a lock (PostgreSQL), to know the RPCs arrived."""
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
            backend.postgres_database,
        )
    finally:
        await conn.close()
    return int(count)


async def _release(handle: Any) -> None:
    if isinstance(handle, sqlite3.Connection):
        handle.execute("COMMIT")
        handle.close()
        return
    pg, tx = handle
    await tx.commit()
    await pg.close()


class _InFlightCall:
    """A ``grpcurl -v`` call in the background; knows when the request left."""

    def __init__(self, argv: list[str], body: str) -> None:
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.sent = threading.Event()
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert self.popen.stdin is not None
        self.popen.stdin.write(body)
        self.popen.stdin.close()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)
            # grpcurl -v prints this just before it sends the request.
            if line.startswith("Request metadata to send"):
                self.sent.set()

    def reply(self, timeout: float) -> Reply:
        """Waits for the call to end; its status and response."""
        self.popen.wait(timeout)
        self._reader.join(timeout)
        assert self.popen.stderr is not None
        stderr = self.popen.stderr.read()
        output = "".join(self.lines)
        if self.popen.returncode == 0:
            output = output.split("Response contents:", 1)[1].split("Response trailers", 1)[0]
        return parse(self.popen.returncode, output, stderr)


async def test_sigterm_lets_in_flight_rpcs_finish_then_exits_0(backend: Backend) -> None:
    process, client = backend.serve("graceful")
    callers = 4
    body = json.dumps({"parent": _partner(), "callback_config": _config(api_key="k" * 256 * 1024)})
    calls: list[_InFlightCall] = []
    try:
        lock = await _hold_write_lock(backend)
        try:
            calls += [
                _InFlightCall(client.command(f"{CONFIGS}/CreateCallbackConfig", verbose=True), body)
                for _ in range(callers)
            ]
            for call in calls:
                sent = await asyncio.to_thread(call.sent.wait, 20)
                assert sent, "grpcurl never sent its request"
            if backend.kind == "postgresql":
                # Proof that the creates reached the database: the first group's
                # session queues on the lock (the others wait in the server for
                # the next group, store/group_commit.py).
                deadline = time.monotonic() + 20
                while await _lock_waiters(backend) < 1:
                    assert time.monotonic() < deadline, "the creates never reached the database"
                    await asyncio.sleep(0.05)
            # Loopback delivery of the other requests takes far less than this.
            await asyncio.sleep(0.5)
            assert all(c.popen.poll() is None for c in calls), "a create ended despite the lock"
            process.popen.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            assert process.popen.poll() is None, "the server exited with RPCs in flight"
        finally:
            await _release(lock)
        for call in calls:
            reply = await asyncio.to_thread(call.reply, 30)
            assert reply.code is grpc.StatusCode.OK, reply
            assert reply.body["callbackConfig"]["name"]
        code = await asyncio.to_thread(process.popen.wait, 30)
        assert code == 0, process.output()
        assert "stopped" in process.output()
    finally:
        for call in calls:
            if call.popen.poll() is None:
                call.popen.kill()
        process.kill()
