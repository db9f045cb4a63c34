"""End to end (issue 13) against real processes: ``hookkeeper serve`` (its
dispatcher and mailer), ``hookkeeper dispatcher`` processes, a real aiohttp
receiver and a real SMTP server. Revocation during an overlap, a 410 that
disables at once and mails once, enabling that resumes a paused delivery,
Retry-After, RecoverDeliveries, Standard Webhooks verified by the official
``standardwebhooks`` library, sustained failure with the test clock, and the
per-second cap held by two dispatchers on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import notification_pb2 as nt
from hookkeeper.notifications.v1 import secret_rotation_pb2 as sr
from hookkeeper.service.app.clock_offset import CONFIRMATION
from tests.e2e.delivery_harness import METADATA, Client, Stack, eventually, new_stack, partner
from tests.support.postgres import create_database, drop_database, require_postgres
from tests.support.receiver import Received, Receiver
from tests.support.smtp import SmtpServer, body_text, smtp_server

pytestmark = pytest.mark.e2e
EVENT = "GuestReviewSubmitted"


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    """One SMTP catcher for the module's server."""
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer
) -> AsyncIterator[tuple[Stack, Client]]:
    """One server with dispatcher and mailer; retries 1000x faster (25 s
    becomes 25 ms, so a policy of 50 retries runs out in about a second)."""
    stack = new_stack(
        tmp_path_factory.mktemp("endpoint-health"),
        HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true",
        HOOKKEEPER_RETRY_INTERVAL_SCALE="0.001",
        HOOKKEEPER_SMTP_URL=smtp.url,
        HOOKKEEPER_MAILER_POLL_SECONDS="0.2",
    )
    client = stack.serve("serve")
    yield stack, client
    await client.close()
    assert stack.stop_all() == [0], stack.processes[0].output()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A fresh receiver per test."""
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


async def _create(client: Client, who: str, url: str, **fields: object) -> tuple[str, str]:
    reply = await client.configs.CreateCallbackConfig(
        cc.CreateCallbackConfigRequest(
            parent=who,
            callback_config=cc.CallbackConfig(
                callback_url=url,
                api_key="k",
                contact_email="ops@example.com",
                request_timeout_seconds=2,
                **fields,  # type: ignore[arg-type]
            ),
        ),
        metadata=METADATA,
    )
    return reply.callback_config.name, reply.secret


async def _get(client: Client, name: str) -> cc.CallbackConfig:
    reply = await client.configs.GetCallbackConfig(
        cc.GetCallbackConfigRequest(name=name), metadata=METADATA
    )
    return reply.callback_config


async def _ready(client: Client, who: str, url: str, receiver: Receiver, **fields: object) -> str:
    """A configuration subscribed to EVENT whose connectivity GET arrived."""
    name, secret = await _create(client, who, url, **fields)
    receiver.secrets = [secret]
    await client.subscribe(who, EVENT, name)
    await receiver.wait_until(lambda: any(r.method == "GET" for r in receiver.requests))
    return name


def _mails_about(smtp: SmtpServer, config_name: str) -> list[EmailMessage]:
    config_id = config_name.rsplit("/", 1)[1]
    return [m for m in smtp.inbox.messages if config_id in str(m["Subject"])]


async def test_revoke_during_an_overlap_leaves_one_signature(
    stack: tuple[Stack, Client], receiver: Receiver
) -> None:
    _, client = stack
    who = partner()
    name = await _ready(client, who, receiver.url, receiver)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.secrets.RevokePreviousSecret(
            sr.RevokePreviousSecretRequest(name=name), metadata=METADATA
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    old = receiver.secrets[0]
    new = await client.refresh(name, keep=True)
    receiver.secrets = [new, old]
    await client.publish(who, EVENT, "during-overlap")
    await receiver.wait_until(lambda: len(receiver.posts()) == 1)
    assert receiver.posts()[0].signature_matches == [0, 1]

    revoked = await client.secrets.RevokePreviousSecret(
        sr.RevokePreviousSecretRequest(name=name), metadata=METADATA
    )
    assert revoked.name == name
    assert revoked.secret_expire_time == (await _get(client, name)).secret_expire_time
    await client.publish(who, EVENT, "after-revoke")
    await receiver.wait_until(lambda: len(receiver.posts()) == 2)
    assert receiver.posts()[1].signature_matches == [0]  # the new secret alone
    signed = await client.secrets.SignNotification(
        sr.SignNotificationRequest(name=name, payload=b"{}"), metadata=METADATA
    )
    assert "," not in signed.signature  # SignNotification agrees


async def test_410_disables_at_once_mails_once_and_enable_resumes(
    stack: tuple[Stack, Client], receiver: Receiver, smtp: SmtpServer
) -> None:
    _, client = stack
    who = partner()
    name = await _ready(client, who, receiver.url, receiver)

    async def gone(_: Received) -> int:
        return 410

    receiver.behaviour = gone
    first = await client.publish(who, EVENT, "gone-1")
    await receiver.wait_until(lambda: len(receiver.posts()) == 1)

    async def disabled() -> cc.CallbackConfig:
        config = await _get(client, name)
        assert config.state == cc.CallbackConfig.STATE_DISABLED
        return config

    config = await eventually(disabled)
    assert "410" in config.disable_reason
    assert config.HasField("disable_time")
    # Published while disabled: kept, paused, in the log, and not sent.
    second = await client.publish(who, EVENT, "gone-2")

    async def paused_in_log() -> None:
        log = await client.attempts(f"{who}/deliveries/-")
        entries = [a for a in log if a.event_id == "gone-2"]
        assert [a.attempt_number for a in entries] == [0]
        assert "disabled" in entries[0].error

    await eventually(paused_in_log)
    [message] = await asyncio.to_thread(_wait_mails, smtp, name, 1)
    assert "410" in body_text(message, "plain")
    assert "enableNotificationCallbackConfig" in body_text(message, "plain")
    # A manual disable of a disabled configuration sends nothing more.
    await client.configs.DisableCallbackConfig(
        cc.DisableCallbackConfigRequest(name=name), metadata=METADATA
    )
    await asyncio.sleep(1.0)  # the mailer polls every 0.2 s: a second mail would be here
    assert len(_mails_about(smtp, name)) == 1
    assert len(receiver.posts()) == 1  # no attempt while disabled

    receiver.behaviour = _ok
    enabled = await client.configs.EnableCallbackConfig(
        cc.EnableCallbackConfigRequest(name=name), metadata=METADATA
    )
    assert enabled.callback_config.state == cc.CallbackConfig.STATE_ACTIVE
    assert not enabled.callback_config.disable_reason
    await receiver.wait_until(lambda: len(receiver.posts()) == 3)
    resumed = [p.envelope()["eventId"] for p in receiver.posts()[1:]]
    assert sorted(resumed) == ["gone-1", "gone-2"]
    sent = {p.transaction_id for p in receiver.posts()}
    assert sent == {first.deliveries[0].transaction_id, second.deliveries[0].transaction_id}


async def _ok(_: Received) -> int:
    return 200


def _wait_mails(smtp: SmtpServer, name: str, count: int, timeout: float = 20) -> list[EmailMessage]:
    deadline = time.monotonic() + timeout
    while len(_mails_about(smtp, name)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} e-mails about {name}")
        time.sleep(0.05)
    return _mails_about(smtp, name)


async def test_retry_after_is_honoured(stack: tuple[Stack, Client], receiver: Receiver) -> None:
    _, client = stack
    who = partner()
    await _ready(client, who, receiver.url, receiver)
    answers: list[int | tuple[int, dict[str, str]]] = [(429, {"Retry-After": "2"}), 200]

    async def throttled_once(_: Received) -> int | tuple[int, dict[str, str]]:
        return answers.pop(0) if answers else 200

    receiver.behaviour = throttled_once
    await client.publish(who, EVENT, "throttled")
    await receiver.wait_until(lambda: len(receiver.posts()) == 2, within=30)
    first, second = receiver.posts()
    # The policy alone would retry after 25 ms (scaled); Retry-After said 2 s.
    assert second.arrival - first.arrival >= 2.0
    assert first.transaction_id == second.transaction_id


async def test_recover_deliveries_signed_with_the_secrets_active_then(
    stack: tuple[Stack, Client], receiver: Receiver
) -> None:
    _, client = stack
    who = partner()
    name = await _ready(client, who, receiver.url, receiver)
    before = datetime.now(UTC) - timedelta(seconds=1)

    async def failing(_: Received) -> int:
        return 500

    receiver.behaviour = failing
    for i in range(2):
        await client.publish(who, EVENT, f"lost-{i}")

    async def all_failed() -> None:
        log = await client.attempts(f"{who}/deliveries/-")
        finals = [a for a in log if a.event_id and a.attempt_number == 51]
        assert len(finals) == 2  # 1 attempt + 50 retries each, used up

    await eventually(all_failed, within=40)
    new = await client.refresh(name, keep=False)
    receiver.secrets = [new]
    receiver.behaviour = _ok
    count = len(receiver.posts())
    since = Timestamp()
    since.FromDatetime(before)
    reply = await client.notifications.RecoverDeliveries(
        nt.RecoverDeliveriesRequest(name=name, since=since), metadata=METADATA
    )
    assert reply.recovered_count == 2
    await receiver.wait_until(lambda: len(receiver.posts()) == count + 2)
    recovered = receiver.posts()[count:]
    assert sorted(p.envelope()["eventId"] for p in recovered) == ["lost-0", "lost-1"]
    assert all(p.signature_matches == [0] for p in recovered)  # the new secret
    again = await client.notifications.RecoverDeliveries(
        nt.RecoverDeliveriesRequest(name=name, since=since), metadata=METADATA
    )
    assert again.recovered_count == 0  # delivered now: nothing failed to recover
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await client.notifications.RecoverDeliveries(
            nt.RecoverDeliveriesRequest(name=name), metadata=METADATA
        )
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "since" in (missing.value.details() or "")


async def test_standard_webhooks_deliveries_verified_by_the_reference_library(
    stack: tuple[Stack, Client], receiver: Receiver
) -> None:
    _, client = stack
    who = partner()
    name = await _ready(
        client,
        who,
        receiver.url,
        receiver,
        signature_scheme=cc.SIGNATURE_SCHEME_STANDARD_WEBHOOKS,
    )
    old = receiver.secrets[0]
    assert old.startswith("whsec_")
    config = await _get(client, name)
    assert config.signature_scheme == cc.SIGNATURE_SCHEME_STANDARD_WEBHOOKS
    answers = [500]

    async def fail_once(_: Received) -> int:
        return answers.pop(0) if answers else 200

    receiver.behaviour = fail_once
    await client.publish(who, EVENT, "sw-1")
    await receiver.wait_until(lambda: len(receiver.posts()) == 2)
    first, retry = receiver.posts()
    assert first.standard_webhooks_verified == [True] == retry.standard_webhooks_verified
    assert first.headers["webhook-id"] == retry.headers["webhook-id"] == first.transaction_id
    assert "x-eg-notification-signature-v2" not in first.headers

    new = await client.refresh(name, keep=True)
    assert new.startswith("whsec_")
    receiver.secrets = [new, old]
    await client.publish(who, EVENT, "sw-2")
    await receiver.wait_until(lambda: len(receiver.posts()) == 3)
    overlap = receiver.posts()[2]
    assert overlap.standard_webhooks_verified == [True, True]  # either secret alone
    assert len(overlap.headers["webhook-signature"].split(" ")) == 2

    await client.secrets.RevokePreviousSecret(
        sr.RevokePreviousSecretRequest(name=name), metadata=METADATA
    )
    await client.publish(who, EVENT, "sw-3")
    await receiver.wait_until(lambda: len(receiver.posts()) == 4)
    assert receiver.posts()[3].standard_webhooks_verified == [True, False]

    signed = await client.secrets.SignNotification(
        sr.SignNotificationRequest(name=name, payload=b"{}", webhook_id="msg-1"),
        metadata=METADATA,
    )
    assert signed.signature.startswith("v1,") and " " not in signed.signature
    with pytest.raises(grpc.aio.AioRpcError) as no_id:
        await client.secrets.SignNotification(
            sr.SignNotificationRequest(name=name, payload=b"{}"), metadata=METADATA
        )
    assert no_id.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as immutable:
        await client.configs.UpdateCallbackConfig(
            cc.UpdateCallbackConfigRequest(
                callback_config=cc.CallbackConfig(
                    name=name, signature_scheme=cc.SIGNATURE_SCHEME_EXPEDIA_V2
                )
            ),
            metadata=METADATA,
        )
    assert immutable.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "signature_scheme" in (immutable.value.details() or "")


async def test_sustained_failure_disables_with_the_test_clock(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Failures start under the real clock; a second server whose test clock
    runs 121 hours ahead makes the next failed attempt, and disables."""
    with smtp_server() as smtp:
        stack = new_stack(
            tmp_path,
            HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true",
            HOOKKEEPER_RETRY_INTERVAL_SCALE="0.02",
        )
        try:
            api = stack.serve("api", HOOKKEEPER_DISPATCHER_ENABLED="false")
            who = partner()
            name, secret = await _create(api, who, receiver.url)
            receiver.secrets = [secret]
            await api.subscribe(who, EVENT, name)

            async def failing(_: Received) -> int:
                return 503  # no Retry-After: the policy alone applies

            receiver.behaviour = failing
            await api.publish(who, EVENT, "doomed")
            now_dispatcher = stack.dispatcher("dispatcher-now")
            await receiver.wait_until(lambda: len(receiver.posts()) >= 3)
            assert now_dispatcher.terminate() == 0
            assert (await _get(api, name)).state == cc.CallbackConfig.STATE_ACTIVE
            later = stack.serve(
                "serve-121h-later",
                HOOKKEEPER_UNSAFE_CLOCK_OFFSET_SECONDS=str(121 * 3600),
                HOOKKEEPER_UNSAFE_TEST_CLOCK=CONFIRMATION,
                HOOKKEEPER_SMTP_URL=smtp.url,
                HOOKKEEPER_MAILER_POLL_SECONDS="0.2",
            )

            async def disabled() -> cc.CallbackConfig:
                config = await _get(api, name)
                assert config.state == cc.CallbackConfig.STATE_DISABLED
                return config

            config = await eventually(disabled)
            assert "120 hours" in config.disable_reason
            await asyncio.to_thread(smtp.inbox.wait_for, 1)
            await asyncio.sleep(1.0)  # a second e-mail would be here by now
            assert len(_mails_about(smtp, name)) == 1
            await api.close()
            await later.close()
        finally:
            codes = stack.stop_all()
        assert set(codes) <= {0}, [p.output() for p in stack.processes]


RATE = 10
LIMITED_EVENTS = 120
WINDOW = 10.0


@pytest.mark.postgres
async def test_per_second_cap_held_by_two_dispatchers(tmp_path: Path) -> None:
    """max_deliveries_per_second = 10 across two dispatcher processes: no 10 s
    window holds more than 10% over 100 arrivals, and an unlimited
    configuration's notifications are not held up behind the backlog."""
    require_postgres()
    url, db_name = await create_database()
    limited_receiver = await Receiver().start()
    free_receiver = await Receiver().start()
    stack = new_stack(
        tmp_path,
        url,
        HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true",
        HOOKKEEPER_DISPATCHER_BATCH_SIZE="20",
    )
    try:
        api = stack.serve("api", HOOKKEEPER_DISPATCHER_ENABLED="false")
        dispatchers = [stack.dispatcher("dispatcher-1"), stack.dispatcher("dispatcher-2")]
        who = partner()
        limited = await _ready(
            api, who, limited_receiver.url, limited_receiver, max_deliveries_per_second=RATE
        )
        assert (await _get(api, limited)).max_deliveries_per_second == RATE
        other = partner()
        await _ready(api, other, free_receiver.url, free_receiver)
        for i in range(LIMITED_EVENTS):
            await api.publish(who, EVENT, f"r-{i}")
        for i in range(10):
            await api.publish(other, EVENT, f"free-{i}")
        await limited_receiver.wait_until(
            lambda: len(limited_receiver.posts()) >= LIMITED_EVENTS, within=60
        )
        arrivals = sorted(p.arrival for p in limited_receiver.posts())
        worst = max(sum(1 for t in arrivals if start <= t < start + WINDOW) for start in arrivals)
        assert worst <= RATE * WINDOW * 1.1, worst
        # The unlimited configuration's ten were all in before the backlog ended.
        assert len(free_receiver.posts()) == 10
        assert max(p.arrival for p in free_receiver.posts()) < arrivals[-1]
        await api.close()
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            rows = await conn.fetch(
                "SELECT DISTINCT dispatcher FROM notification_attempts "
                "WHERE attempt_number > 0 AND delivery_id IN (SELECT id FROM "
                "notification_deliveries WHERE kind = 'EVENT')"
            )
        finally:
            await conn.close()
        assert len(rows) == 2, rows  # both dispatchers shared the work
        assert len(dispatchers) == 2
    finally:
        codes = stack.stop_all()
        await limited_receiver.stop()
        await free_receiver.stop()
        await drop_database(db_name)
    assert set(codes) <= {0}
