"""End to end: TLS and mTLS on the real server process (grpcurl with
``-cacert``, with and without ``-cert/-key``), a certificate rotated on disk,
the refusal of plaintext beyond loopback, least-privilege principals made with
``hookkeeper principal create``, the audit trail and ``hookkeeper audit
verify``, and the gateway calling the service over mTLS.

Certificates are made at test time with trustme.
"""

from __future__ import annotations

import base64
import re
import sqlite3
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme

from hookkeeper.service.crypto.keyring import generate_key_entry
from hookkeeper.service.store import migrate
from tests.support.gateway_stack import SERVICE_TOKEN, start_stack
from tests.support.grpcurl import CONFIGS, SECRETS, Grpcurl
from tests.support.processes import (
    GRPCURL,
    HOOKKEEPER,
    Process,
    base_env,
    free_port,
    run_cli,
    start,
    wait_for_grpc_health,
)

pytestmark = pytest.mark.e2e

ADMIN = "trust-admin-" + "a" * 24
NOTIFY = "hookkeeper.notifications.v1.NotificationService"
AUDIT = "hookkeeper.notifications.v1.AuditService"
PUBLISH = f"{NOTIFY}/PublishEvent"
CONFIG = {
    "callbackUrl": "https://hooks.example.com/in",
    "apiKey": "api-key-never-in-the-trail",
    "contactEmail": "ops@example.com",
}


@dataclass
class Pki:
    """A CA with a server certificate for 127.0.0.1 and client certificates."""

    dir: Path
    ca: trustme.CA

    def write(self, name: str, cert: trustme.LeafCert) -> tuple[str, str]:
        """Writes a certificate chain and key; returns their paths."""
        cert_path, key_path = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        cert.private_key_pem.write_to_path(str(key_path))
        cert.cert_chain_pems[0].write_to_path(str(cert_path))
        return str(cert_path), str(key_path)

    @property
    def ca_file(self) -> str:
        path = self.dir / f"ca-{id(self.ca)}.pem"
        if not path.exists():
            self.ca.cert_pem.write_to_path(str(path))
        return str(path)

    def client(self, identity: str) -> tuple[str, str]:
        """A client certificate with ``identity`` as its SAN."""
        return self.write(f"client-{identity}", self.ca.issue_cert(identity))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path, trustme.CA())


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = base_env(
        {
            "HOOKKEEPER_VAR_DIR": str(tmp / "var"),
            "HOOKKEEPER_MASTER_KEYS": generate_key_entry(),
            "HOOKKEEPER_SERVICE_TOKENS": f"admin={ADMIN}",
            "HOOKKEEPER_LOG_FORMAT": "text",
            **extra,
        }
    )
    migrate.upgrade(f"sqlite+aiosqlite:///{tmp / 'var' / 'hookkeeper.db'}")
    return env


def _serve(
    tmp: Path, env: dict[str, str], credentials: grpc.ChannelCredentials | None = None
) -> tuple[Process, str]:
    address = f"127.0.0.1:{free_port()}"
    process = start(["serve"], {**env, "HOOKKEEPER_GRPC_LISTEN": address}, tmp / "serve.log")
    try:
        wait_for_grpc_health(address, credentials=credentials)
    except TimeoutError:
        process.kill()
        raise AssertionError(f"server did not start:\n{process.output()}") from None
    return process, address


def _credentials(ca: str, client: tuple[str, str] | None = None) -> grpc.ChannelCredentials:
    cert = key = None
    if client:
        cert, key = Path(client[0]).read_bytes(), Path(client[1]).read_bytes()
    return grpc.ssl_channel_credentials(Path(ca).read_bytes(), key, cert)


def _handshake_fails(transport: list[str], address: str) -> str:
    """grpcurl's output when the connection (not an RPC) fails; asserts it does."""
    result = subprocess.run(
        [GRPCURL, *transport, "-max-time", "3", address, "list"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0, result.stdout
    assert "hookkeeper" not in result.stdout
    return result.stderr


@pytest.fixture
def tls_server(pki: Pki, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A TLS (not mTLS) server; (address, certificate path, key path)."""
    cert, key = pki.write("server", pki.ca.issue_cert("127.0.0.1", "localhost"))
    env = _env(tmp_path, HOOKKEEPER_GRPC_TLS_CERT_FILE=cert, HOOKKEEPER_GRPC_TLS_KEY_FILE=key)
    process, address = _serve(tmp_path, env, _credentials(pki.ca_file))
    yield address, Path(cert), Path(key)
    assert process.terminate() == 0, process.output()


def test_tls_with_cacert_and_no_plaintext(pki: Pki, tls_server: tuple[str, Path, Path]) -> None:
    address = tls_server[0]
    client = Grpcurl(address, ADMIN, transport=["-cacert", pki.ca_file])
    created = client.ok(
        f"{CONFIGS}/CreateCallbackConfig", {"parent": "partners/p1", "callbackConfig": CONFIG}
    )
    assert len(created["secret"]) == 24
    _handshake_fails(["-plaintext"], address)
    # A client that does not trust the CA refuses the server.
    other = Pki(pki.dir, trustme.CA())
    assert "certificate" in _handshake_fails(["-cacert", other.ca_file], address)


def test_rotated_certificate_is_picked_up_without_restart(
    pki: Pki, tls_server: tuple[str, Path, Path]
) -> None:
    address, cert_path, key_path = tls_server
    old = Grpcurl(address, ADMIN, transport=["-cacert", pki.ca_file])
    assert "AuditService" in old.run("list")
    rotated = Pki(pki.dir, trustme.CA())
    new_cert = rotated.ca.issue_cert("127.0.0.1")
    # Key first, certificate second, as a careless operator might: the
    # half-rotated pair is never served.
    new_cert.private_key_pem.write_to_path(str(key_path))
    assert "AuditService" in old.run("list")
    new_cert.cert_chain_pems[0].write_to_path(str(cert_path))
    new = Grpcurl(address, ADMIN, transport=["-cacert", rotated.ca_file])
    assert "AuditService" in new.run("list")
    _handshake_fails(["-cacert", pki.ca_file], address)


def test_mtls_needs_a_client_certificate_from_the_ca(pki: Pki, tmp_path: Path) -> None:
    cert, key = pki.write("server", pki.ca.issue_cert("127.0.0.1"))
    client_cert, client_key = pki.client("ops.internal")
    env = _env(
        tmp_path,
        HOOKKEEPER_GRPC_TLS_CERT_FILE=cert,
        HOOKKEEPER_GRPC_TLS_KEY_FILE=key,
        HOOKKEEPER_GRPC_TLS_CLIENT_CA_FILE=pki.ca_file,
    )
    process, address = _serve(tmp_path, env, _credentials(pki.ca_file, (client_cert, client_key)))
    try:
        _handshake_fails(["-cacert", pki.ca_file], address)
        (tmp_path / "stranger").mkdir()
        stranger = Pki(tmp_path / "stranger", trustme.CA()).client("ops.internal")
        _handshake_fails(
            ["-cacert", pki.ca_file, "-cert", stranger[0], "-key", stranger[1]], address
        )
        client = Grpcurl(
            address,
            ADMIN,
            transport=["-cacert", pki.ca_file, "-cert", client_cert, "-key", client_key],
        )
        client.ok(
            f"{CONFIGS}/CreateCallbackConfig", {"parent": "partners/p1", "callbackConfig": CONFIG}
        )
        # A certificate alone (no token) names no principal here.
        assert (
            client.call(
                f"{CONFIGS}/ListCallbackConfigs", {"parent": "partners/p1"}, token=None
            ).code
            is grpc.StatusCode.UNAUTHENTICATED
        )
    finally:
        assert process.terminate() == 0, process.output()


def test_plaintext_beyond_loopback_is_refused_at_start(tmp_path: Path) -> None:
    env = _env(tmp_path, HOOKKEEPER_GRPC_LISTEN=f"0.0.0.0:{free_port()}")
    result = subprocess.run(
        [HOOKKEEPER, "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "refusing to serve plaintext gRPC on 0.0.0.0" in result.stderr
    assert "HOOKKEEPER_GRPC_ALLOW_PLAINTEXT" in result.stderr


def _principal_block(name: str, *args: str) -> tuple[str, str]:
    """``hookkeeper principal create``: (TOML block, token)."""
    out = run_cli(["principal", "create", name, *args], base_env({}))
    *block, token = out.strip().splitlines()
    text = "\n".join(block)
    (entry,) = tomllib.loads(text)["principal"]
    assert token not in text
    assert entry["name"] == name
    return text, token


def _sign(admin: Grpcurl, name: str) -> str:
    request = {
        "name": name,
        "payload": base64.b64encode(b"{}").decode(),
        "timestamp": "2026-01-01T00:00:00Z",
    }
    return str(admin.ok(f"{SECRETS}/SignNotification", request)["signature"])


def test_scoped_principals_and_the_audit_trail(pki: Pki, tmp_path: Path) -> None:
    publisher_block, publisher = _principal_block(
        "publisher", "--method", PUBLISH, "--partner", "p1"
    )
    cert_block, _ = _principal_block(
        "signer",
        "--method",
        f"{SECRETS}/Sign*",
        "--partner",
        "p*",
        "--tls-identity",
        "signer.internal",
    )
    auditor_block, auditor = _principal_block(
        "auditor", "--method", f"{AUDIT}/*", "--partner", "p1"
    )
    principals = tmp_path / "principals.toml"
    principals.write_text("\n".join([publisher_block, cert_block, auditor_block]))
    cert, key = pki.write("server", pki.ca.issue_cert("127.0.0.1"))
    signer_cert, signer_key = pki.client("signer.internal")
    env = _env(
        tmp_path,
        HOOKKEEPER_SERVICE_PRINCIPALS_FILE=str(principals),
        HOOKKEEPER_GRPC_TLS_CERT_FILE=cert,
        HOOKKEEPER_GRPC_TLS_KEY_FILE=key,
        HOOKKEEPER_GRPC_TLS_CLIENT_CA_FILE=pki.ca_file,
    )
    process, address = _serve(tmp_path, env, _credentials(pki.ca_file, (signer_cert, signer_key)))
    transport = ["-cacert", pki.ca_file, "-cert", signer_cert, "-key", signer_key]
    admin = Grpcurl(address, ADMIN, transport=transport)
    try:
        created = admin.ok(
            f"{CONFIGS}/CreateCallbackConfig", {"parent": "partners/p1", "callbackConfig": CONFIG}
        )
        name = created["callbackConfig"]["name"]
        other = admin.ok(
            f"{CONFIGS}/CreateCallbackConfig", {"parent": "partners/p2", "callbackConfig": CONFIG}
        )
        before = _sign(admin, name)

        scoped = Grpcurl(address, publisher, transport=transport)
        event = {"eventType": "GuestReviewSubmitted", "payloadJson": '{"id": 1}'}
        published = scoped.ok(PUBLISH, {"parent": "partners/p1", "eventId": "e-1", **event})
        assert published["event"]["eventId"] == "e-1"
        for method, request in [
            (f"{SECRETS}/RefreshSecret", {"name": name}),
            (f"{CONFIGS}/GetCallbackConfig", {"name": name}),
            (PUBLISH, {"parent": "partners/p2", "eventId": "e-2", **event}),
        ]:
            reply = scoped.call(method, request)
            assert reply.code is grpc.StatusCode.PERMISSION_DENIED, (method, reply.body)
            assert "principal publisher" in reply.message
        # The denied refresh changed nothing: the same secret signs.
        assert _sign(admin, name) == before
        # The mTLS certificate alone identifies the signer principal.
        assert (
            scoped.call(
                f"{SECRETS}/SignNotification", {"name": name, "payload": "e30="}, token=None
            ).code
            is grpc.StatusCode.OK
        )
        denied = scoped.call(f"{SECRETS}/RefreshSecret", {"name": name}, token=None)
        assert denied.code is grpc.StatusCode.PERMISSION_DENIED
        assert "principal signer" in denied.message

        trail = admin.ok(f"{AUDIT}/ListAuditEvents", {"parent": "partners/-"})["auditEvents"]
        seen = [(e["actor"], e["action"], e["resource"], e["outcome"]) for e in trail]
        assert ("admin", "callback_config.create", name, "OK") in seen
        assert ("publisher", "call.denied", name, "PERMISSION_DENIED") in seen
        assert ("publisher", "call.denied", "partners/p2", "PERMISSION_DENIED") in seen
        assert ("signer", "call.denied", name, "PERMISSION_DENIED") in seen
        text = str(trail)
        for secret in (created["secret"], other["secret"], CONFIG["apiKey"], ADMIN, publisher):
            assert secret not in text
        # A principal scoped to p1 sees only p1's events through partners/-.
        scoped_trail = Grpcurl(address, auditor, transport=transport).ok(
            f"{AUDIT}/ListAuditEvents", {"parent": "partners/-"}
        )["auditEvents"]
        assert scoped_trail and all(e["name"].startswith("partners/p1/") for e in scoped_trail)
    finally:
        assert process.terminate() == 0, process.output()

    # SIGTERM wrote the counted signatures; the chain verifies.
    tail = run_cli(["audit", "tail", "-n", "100"], env)
    # The admin's signatures, counted per minute: one event, or two when the
    # test ran across a minute's end.
    signed = [int(m.group(1) or 1) for m in re.finditer(r" admin secret\.sign(?: x(\d+))? ", tail)]
    assert sum(signed) in (2, 3), tail
    assert "the audit trail is intact" in run_cli(["audit", "verify"], env)
    database = sqlite3.connect(tmp_path / "var" / "hookkeeper.db")
    with database:
        database.execute("UPDATE audit_events SET outcome = 'OK' WHERE seq = 5")
    database.close()
    result = subprocess.run(
        [HOOKKEEPER, "audit", "verify"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "audit event 5: its contents do not match its hash (altered)" in result.stderr


def test_gateway_over_mtls(pki: Pki, tmp_path: Path) -> None:
    cert, key = pki.write("server", pki.ca.issue_cert("127.0.0.1"))
    gateway_cert, gateway_key = pki.client("gateway.internal")
    stack = start_stack(
        tmp_path,
        grpc_credentials=_credentials(pki.ca_file, (gateway_cert, gateway_key)),
        HOOKKEEPER_GRPC_TLS_CERT_FILE=cert,
        HOOKKEEPER_GRPC_TLS_KEY_FILE=key,
        HOOKKEEPER_GRPC_TLS_CLIENT_CA_FILE=pki.ca_file,
        HOOKKEEPER_GATEWAY_GRPC_TLS_CA_FILE=pki.ca_file,
        HOOKKEEPER_GATEWAY_GRPC_TLS_CERT_FILE=gateway_cert,
        HOOKKEEPER_GATEWAY_GRPC_TLS_KEY_FILE=gateway_key,
    )
    try:
        partner, token = stack.partner("mTLS Hotels")
        created = stack.post(
            "mutation($input: CreateNotificationCallbackConfigInput!) { "
            "createNotificationCallbackConfig(input: $input) { callbackConfig { id } secret } }",
            token,
            {
                "input": {
                    "callbackUrl": "https://hooks.example.com/in",
                    "apiKey": "k-1",
                    "contactEmail": "ops@example.com",
                }
            },
        ).json()
        assert "errors" not in created, created
        config_id = created["data"]["createNotificationCallbackConfig"]["callbackConfig"]["id"]
        trail = stack.post(
            "{ notificationAuditEvents { events { action resource actor outcome } "
            "nextPageToken } }",
            token,
        ).json()
        assert "errors" not in trail, trail
        events = trail["data"]["notificationAuditEvents"]["events"]
        resource = f"partners/{partner}/callbackConfigs/{config_id}"
        assert {
            "action": "callback_config.create",
            "resource": resource,
            "actor": "gateway",
            "outcome": "OK",
        } in events
        # Another partner's trail is not visible: the gateway asks for the caller's own.
        _, other_token = stack.partner("Other Hotels")
        others = stack.post(
            "{ notificationAuditEvents { events { resource } } }", other_token
        ).json()
        assert all(
            partner not in e["resource"]
            for e in others["data"]["notificationAuditEvents"]["events"]
        )
        # A gateway without the client certificate cannot reach the service.
        url = stack.start_gateway(
            "plain-client",
            HOOKKEEPER_GATEWAY_GRPC_TLS_CERT_FILE="",
            HOOKKEEPER_GATEWAY_GRPC_TLS_KEY_FILE="",
        )
        refused = stack.post(
            "{ notificationAuditEvents { events { resource } } }", token, url=url
        ).json()
        assert refused.get("errors"), refused
    finally:
        stack.stop()
    assert uuid.UUID(config_id)
    assert SERVICE_TOKEN not in str(trail)
