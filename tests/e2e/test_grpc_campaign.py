"""A property-based campaign against the real ``hookkeeper serve`` process
over a real channel: for every RPC of every service, requests generated from
the request message's descriptor (tests/support/proto_strategies.py): every
field type, out-of-range numbers and timestamps, hostile and invalid text,
deep and non-portable JSON, forged page tokens, invalid UTF-8 on the wire,
truncated messages and noise.

The properties: the status is never INTERNAL or UNKNOWN (nor UNAVAILABLE:
the database is up), and INVALID_ARGUMENT always carries a
``google.rpc.BadRequest`` naming a field (the very field, when the test put
invalid UTF-8 in it). The number of cases goes to the run's figures.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings

from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.notifications.v1 import notification_pb2 as nt
from hookkeeper.notifications.v1 import notification_pb2_grpc as nt_grpc
from hookkeeper.service.domain.event_types import CATALOGUE
from tests.integration.test_error_choke_point import every_method
from tests.support.figures import report
from tests.support.postgres import create_database, drop_database, require_postgres
from tests.support.processes import (
    Process,
    base_env,
    free_port,
    run_cli,
    start,
    wait_for_grpc_health,
)
from tests.support.proto_strategies import Case, Plausible, hostile_cases, wire_bytes

pytestmark = pytest.mark.e2e

TOKEN = "campaign-token-0123456789abcdef"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
EXAMPLES_PER_RPC = 80
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}
COUNTS: Counter[str] = Counter()
T = TypeVar("T")


class Campaign:
    """The running server, a channel to it, and what is worth trying."""

    def __init__(self, process: Process, address: str, plausible: Plausible) -> None:
        self.process = process
        self.channel = grpc.insecure_channel(
            address, options=[("grpc.max_send_message_length", 8 * 1024 * 1024)]
        )
        self.plausible = plausible

    def call(self, method: MethodDescriptor, body: bytes) -> grpc.RpcError | None:
        path = f"/{method.containing_service.full_name}/{method.name}"
        if method.server_streaming:
            # A watch streams until cancelled: its first answer is the verdict.
            # grpc-stubs types the call iterator loosely: the stream is an Any.
            stream: Any = self.channel.unary_stream(path, None, None)(
                body, metadata=AUTH, timeout=30
            )
            try:
                next(stream)
            except grpc.RpcError as error:
                return error
            finally:
                stream.cancel()
            return None
        send = self.channel.unary_unary(path, None, None)  # raw bytes both ways
        try:
            send(body, metadata=AUTH, timeout=30)
        except grpc.RpcError as error:
            return error
        return None


def _seed(channel: grpc.Channel, dead_url: str) -> Plausible:
    """Resources the campaign's requests can name: a partner with two
    configurations, a subscription, an event, a real page token."""
    partner = "partners/campaign"
    configs = cc_grpc.CallbackConfigServiceStub(channel)
    notifications = nt_grpc.NotificationServiceStub(channel)
    names = []
    for _ in range(3):
        created = configs.CreateCallbackConfig(
            cc.CreateCallbackConfigRequest(
                parent=partner,
                callback_config=cc.CallbackConfig(
                    callback_url=dead_url, api_key="key", contact_email="ops@example.com"
                ),
            ),
            metadata=AUTH,
        )
        names.append(created.callback_config.name)
    page = configs.ListCallbackConfigs(
        cc.ListCallbackConfigsRequest(parent=partner, page_size=1), metadata=AUTH
    )
    assert page.next_page_token
    kind = CATALOGUE[0].name
    notifications.CreateSubscription(
        nt.CreateSubscriptionRequest(
            parent=partner, subscription=nt.Subscription(event_type=kind, callback_config=names[0])
        ),
        metadata=AUTH,
    )
    published = notifications.PublishEvent(
        nt.PublishEventRequest(
            parent=partner, event_type=kind, event_id="ev-seed", payload_json='{"a":1}'
        ),
        metadata=AUTH,
    )
    delivery = published.deliveries[0].name
    return Plausible(
        {
            "parent": [partner, "partners/other", f"{partner}/deliveries/-", delivery],
            "name": [
                *names,
                f"{partner}/callbackConfigs/{uuid.uuid4()}",
                f"{partner}/subscriptions/{kind}",
                f"{partner}/subscriptions/{CATALOGUE[1].name}",
                delivery,
                f"{partner}/deliveries/{uuid.uuid4()}",
            ],
            "callback_config": names,
            "Subscription.name": [f"{partner}/subscriptions/{kind}"],
            "DeleteSubscriptionRequest.name": [f"{partner}/subscriptions/{CATALOGUE[1].name}"],
            "DeleteCallbackConfigRequest.name": [f"{partner}/callbackConfigs/{uuid.uuid4()}"],
            "RedeliverNotificationRequest.name": [delivery],
            "ListDeliveryAttemptsRequest.parent": [f"{partner}/deliveries/-", delivery],
            "callback_url": [dead_url, "https://127.0.0.1/x", "ftp://127.0.0.1/"],
            "api_key": ["key", "k" * (1024 * 1024 + 1)],
            "contact_email": ["ops@example.com", "a@b"],
            "event_type": [t.name for t in CATALOGUE],
            "event_id": ["ev-seed", "ev-1"],
            "payload_json": ['{"a":1}', json.dumps({"nested": [[{"x": "é"}]]})],
            # A real token of another list (ListCallbackConfigs of the partner),
            # and hand-made ones.
            "page_token": [page.next_page_token, page.next_page_token[:-2], "eyJ0IjoxfQ"],
            "token": ["hkp_" + "x" * 43],
            "update_mask": [
                "callback_url",
                "api_key",
                "contact_email",
                "request_timeout_seconds",
                "callback_config",
                "*",
            ],
        }
    )


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine on its own loop in a worker thread (a sync fixture
    must not touch the loop pytest-asyncio keeps)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def campaign(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Campaign]:
    """The real server on each database kind (PostgreSQL refuses what SQLite
    stores: NUL characters, over-long values), seeded with resources."""
    kind: str = request.param
    tmp = tmp_path_factory.mktemp(f"campaign-{kind}")
    env = base_env(
        {
            "HOOKKEEPER_VAR_DIR": str(tmp / "var"),
            "HOOKKEEPER_MASTER_KEYS": run_cli(["keys", "generate"], base_env({})).strip(),
            "HOOKKEEPER_SERVICE_TOKENS": f"tests={TOKEN}",
            # Every URL the campaign can make valid points at 127.0.0.1.
            "HOOKKEEPER_ALLOW_INSECURE_CALLBACKS": "true",
            "HOOKKEEPER_DISPATCHER_ENABLED": "false",
            "HOOKKEEPER_LOG_FORMAT": "text",
        }
    )
    database = None
    if kind == "postgresql":
        require_postgres()
        url, database = _run_async(create_database("hookkeeper_campaign"))
        env["HOOKKEEPER_DATABASE_URL"] = url
    try:
        yield from _campaign(kind, env, tmp)
    finally:
        if database is not None:
            _run_async(drop_database(database))


def _campaign(kind: str, env: dict[str, str], tmp: Path) -> Iterator[Campaign]:
    run_cli(["migrate"], env)
    address = f"127.0.0.1:{free_port()}"
    process = start(["serve"], {**env, "HOOKKEEPER_GRPC_LISTEN": address}, tmp / "serve.log")
    try:
        wait_for_grpc_health(address)
    except TimeoutError:
        process.kill()
        raise AssertionError(f"server did not start:\n{process.output()}") from None
    with grpc.insecure_channel(address) as channel:
        plausible = _seed(channel, f"http://127.0.0.1:{free_port()}/hook")
    COUNTS.clear()
    started = time.monotonic()
    running = Campaign(process, address, plausible)
    yield running
    running.channel.close()
    code = process.terminate()
    log = process.output()
    total = sum(COUNTS.values())
    report(
        f"grpc campaign cases ({kind})",
        f"{total} over {len(every_method())} RPCs in {time.monotonic() - started:.1f}s "
        f"{dict(COUNTS)}",
    )
    assert code == 0, log
    assert "Traceback" not in log, log


def _violations(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "INVALID_ARGUMENT without a google.rpc.Status"
    fields: list[str] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return fields


def _check(campaign: Campaign, method: MethodDescriptor, case: Case) -> None:
    COUNTS[case.kind] += 1
    error = campaign.call(method, case.body)
    if error is None:
        return
    code = error.code()
    assert code in ALLOWED, f"{method.name} {case.kind}: {code} {error.details()}"
    if code != grpc.StatusCode.INVALID_ARGUMENT:
        return
    fields = _violations(error)
    assert fields and all(fields), f"{method.name}: INVALID_ARGUMENT naming no field"
    if case.bad_field:
        assert fields == [case.bad_field], (method.name, case.bad_field, fields)


@pytest.mark.parametrize("method", every_method(), ids=lambda m: m.name)
def test_no_request_is_an_internal_error(campaign: Campaign, method: MethodDescriptor) -> None:
    @settings(
        max_examples=EXAMPLES_PER_RPC,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )
    @given(case=wire_bytes(method.input_type, campaign.plausible))
    def run(case: Case) -> None:
        _check(campaign, method, case)

    run()


@pytest.mark.parametrize("method", every_method(), ids=lambda m: m.name)
def test_every_field_with_every_hostile_value(campaign: Campaign, method: MethodDescriptor) -> None:
    """Systematic where the campaign is random: a well-formed request with
    one field at a time set to each hostile value of its type."""
    for _path, request in hostile_cases(method.input_type, campaign.plausible):
        _check(campaign, method, Case(request.SerializeToString(), "sweep"))
