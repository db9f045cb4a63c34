"""End to end: the real ``hookkeeper serve`` process on a private PostgreSQL
cluster that the test stops for a few seconds and starts again (never the
machine's PostgreSQL).

While the database is away every RPC that needs it answers UNAVAILABLE,
gRPC health says NOT_SERVING, and the log says once that the database went
away (no traceback per request, none from the dispatcher or mailer loops).
After it is back, health says SERVING again without any request traffic,
the log says once that it came back, and requests succeed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hookkeeper.notifications.v1 import audit_pb2_grpc as au_grpc
from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.notifications.v1 import notification_pb2 as nt
from hookkeeper.notifications.v1 import notification_pb2_grpc as nt_grpc
from hookkeeper.notifications.v1 import partner_pb2_grpc as pt_grpc
from hookkeeper.notifications.v1 import secret_rotation_pb2_grpc as sr_grpc
from tests.integration.test_error_choke_point import every_method
from tests.support.figures import report
from tests.support.private_postgres import PrivateCluster, started_cluster
from tests.support.processes import (
    Process,
    base_env,
    free_port,
    run_cli,
    start,
    wait_for_grpc_health,
)
from tests.support.proto_strategies import Plausible, base_message

pytestmark = pytest.mark.e2e

TOKEN = "outage-token-0123456789abcdef"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
OUTAGE_SECONDS = 3.0
# RPCs that answer without the database (the event-type catalogue is code).
NO_DATABASE = {"ListEventTypes"}
WENT_AWAY = "database unreachable"
CAME_BACK = "database reachable again"


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    """A private PostgreSQL cluster the test may stop."""
    with started_cluster() as private:
        yield private


class Client:
    """Stubs of every service over one channel, with the token."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.configs = cc_grpc.CallbackConfigServiceStub(self.channel)
        self.secrets = sr_grpc.SecretRotationServiceStub(self.channel)
        self.partners = pt_grpc.PartnerServiceStub(self.channel)
        self.notifications = nt_grpc.NotificationServiceStub(self.channel)
        self.audit = au_grpc.AuditServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def status(self) -> int:
        return int(self.health.Check(health_pb2.HealthCheckRequest(), timeout=2).status)


def _calls(client: Client, partner: str, config: str) -> dict[str, Callable[[], Any]]:
    """One well-formed request per RPC that needs the database, built from
    the request descriptors (tests/support/proto_strategies.py), so an RPC
    added later is covered without editing this test."""
    plausible = Plausible(
        {
            "parent": [partner],
            "name": [config],
            "callback_config": [config],
            "Subscription.name": [f"{partner}/subscriptions/GuestReviewSubmitted"],
            "DeleteSubscriptionRequest.name": [f"{partner}/subscriptions/ReviewsApproved"],
            "RedeliverNotificationRequest.name": [f"{partner}/deliveries/{uuid.uuid4()}"],
            "ListDeliveryAttemptsRequest.parent": [f"{partner}/deliveries/-"],
            "DeleteCallbackConfigRequest.name": [f"{partner}/callbackConfigs/{uuid.uuid4()}"],
            "callback_url": ["https://hooks.example.com/x"],
            "api_key": ["key"],
            "contact_email": ["ops@example.com"],
            "event_type": ["GuestReviewSubmitted"],
            "Subscription.event_type": ["ReviewsApproved"],
            "event_id": [f"ev-{uuid.uuid4()}"],
            "payload_json": [json.dumps({"review": "r-1"})],
            "token": ["hkp_" + "x" * 43],
            "update_mask": ["contact_email"],
            "UpdateSubscriptionRequest.update_mask": ["callback_config"],
            "since": ["2026-01-01T00:00:00Z"],
            "watcher": ["outage-test"],
        }
    )
    calls: dict[str, Callable[[], Any]] = {}
    for method in every_method():
        if method.name in NO_DATABASE:
            continue
        body = base_message(method.input_type, plausible).SerializeToString()
        path = f"/{method.containing_service.full_name}/{method.name}"
        calls[method.name] = _caller(client, path, body, method.server_streaming)
    return calls


def _caller(client: Client, path: str, body: bytes, streaming: bool) -> Callable[[], Any]:
    """A call of ``path`` with raw bytes (the first message of a stream)."""

    def call() -> Any:
        if streaming:
            stream = client.channel.unary_stream(path, None, None)
            return next(iter(stream(body, metadata=AUTH, timeout=5)))
        return client.channel.unary_unary(path, None, None)(body, metadata=AUTH, timeout=5)

    return call


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _wait_for_status(client: Client, wanted: int, deadline_seconds: float) -> float:
    """Polls health every 20 ms until ``wanted``; returns when it was seen."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        try:
            if client.status() == wanted:
                return time.monotonic()
        except grpc.RpcError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"health never reported {wanted} within {deadline_seconds}s")


def _serve(cluster: PrivateCluster, tmp_path: Path) -> tuple[Process, str]:
    env = base_env(
        {
            "HOOKKEEPER_VAR_DIR": str(tmp_path / "var"),
            "HOOKKEEPER_DATABASE_URL": cluster.url,
            "HOOKKEEPER_MASTER_KEYS": run_cli(["keys", "generate"], base_env({})).strip(),
            "HOOKKEEPER_SERVICE_TOKENS": f"tests={TOKEN}",
            "HOOKKEEPER_ALLOW_INSECURE_CALLBACKS": "true",
            # The mailer and the dispatcher poll fast, so their loops meet the outage.
            "HOOKKEEPER_DISPATCHER_ENABLED": "true",
            "HOOKKEEPER_SMTP_URL": f"smtp://127.0.0.1:{free_port()}",
            "HOOKKEEPER_MAILER_POLL_SECONDS": "0.2",
            "HOOKKEEPER_DISPATCHER_POLL_INTERVAL_SECONDS": "0.1",
            "HOOKKEEPER_LOG_FORMAT": "text",
        }
    )
    run_cli(["migrate"], env)
    address = f"127.0.0.1:{free_port()}"
    process = start(["serve"], {**env, "HOOKKEEPER_GRPC_LISTEN": address}, tmp_path / "serve.log")
    try:
        wait_for_grpc_health(address)
    except TimeoutError:
        process.kill()
        raise AssertionError(f"server did not start:\n{process.output()}") from None
    return process, address


def test_a_database_outage_is_unavailable_not_serving_and_logged_once(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    process, address = _serve(cluster, tmp_path)
    client = Client(address)
    try:
        partner = f"partners/p-{uuid.uuid4().hex[:8]}"
        created = client.configs.CreateCallbackConfig(
            cc.CreateCallbackConfigRequest(
                parent=partner,
                callback_config=cc.CallbackConfig(
                    callback_url=f"http://127.0.0.1:{free_port()}/hook",
                    api_key="key",
                    contact_email="ops@example.com",
                ),
            ),
            metadata=AUTH,
        )
        config = created.callback_config.name
        client.notifications.CreateSubscription(
            nt.CreateSubscriptionRequest(
                parent=partner,
                subscription=nt.Subscription(
                    event_type="GuestReviewSubmitted", callback_config=config
                ),
            ),
            metadata=AUTH,
        )
        calls = _calls(client, partner, config)
        declared = {m.name for m in every_method()}
        assert set(calls) == declared - NO_DATABASE

        cluster.stop()
        stopped = time.monotonic()
        not_serving = _wait_for_status(client, health_pb2.HealthCheckResponse.NOT_SERVING, 10)

        codes: dict[str, set[grpc.StatusCode]] = {name: set() for name in calls}
        rounds = 0
        while time.monotonic() - stopped < OUTAGE_SECONDS:
            for name, call in calls.items():
                codes[name].add(_code(call))
            rounds += 1
        assert client.status() == health_pb2.HealthCheckResponse.NOT_SERVING
        assert {name: {grpc.StatusCode.UNAVAILABLE} for name in calls} == codes

        cluster.start()
        back = time.monotonic()
        serving = _wait_for_status(client, health_pb2.HealthCheckResponse.SERVING, 10)
        recovery = serving - back
        report(
            "database outage",
            f"{rounds * len(calls)} RPCs answered UNAVAILABLE in {OUTAGE_SECONDS:.0f}s; "
            f"NOT_SERVING {not_serving - stopped:.3f}s after the stop; SERVING "
            f"{recovery:.3f}s after the database accepted connections again",
        )
        for name in ("CreateCallbackConfig", "PublishEvent", "ListCallbackConfigs"):
            assert _code(calls[name]) == grpc.StatusCode.OK, name
    finally:
        client.channel.close()
        code = process.terminate()
    log = process.output()
    assert code == 0, log
    assert log.count(WENT_AWAY) == 1, log
    assert log.count(CAME_BACK) == 1, log
    assert "Traceback" not in log, log
