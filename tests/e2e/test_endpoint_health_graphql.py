"""Endpoint health through the public GraphQL gateway (issue 13): real
``serve`` (dispatcher and mailer) and ``gateway`` processes, a real receiver
verifying Standard Webhooks with the official ``standardwebhooks`` library,
and a real SMTP server. Events are published over gRPC, as internal services
do."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest

from hookkeeper.notifications.v1 import notification_pb2 as nt
from hookkeeper.notifications.v1 import notification_pb2_grpc as nt_grpc
from tests.support.gateway_stack import SERVICE_TOKEN, Stack, start_stack
from tests.support.receiver import Received, Receiver
from tests.support.smtp import SmtpServer, smtp_server

pytestmark = pytest.mark.e2e
EVENT = "GuestReviewSubmitted"
CONFIG_FIELDS = (
    "id state disableReason disableTime signatureScheme maxDeliveriesPerSecond "
    "secretExpirationDateTime"
)
CREATE = f"""
mutation C($input: CreateNotificationCallbackConfigInput!) {{
  createNotificationCallbackConfig(input: $input) {{ callbackConfig {{ {CONFIG_FIELDS} }} secret }}
}}
"""
UPDATE = f"""
mutation U($input: UpdateNotificationCallbackConfigInput!) {{
  updateNotificationCallbackConfig(input: $input) {{ callbackConfig {{ {CONFIG_FIELDS} }} }}
}}
"""
REFRESH = """
mutation R($input: RefreshNotificationCallbackConfigSecretInput!) {
  refreshNotificationCallbackConfigSecret(input: $input) { secret }
}
"""
REVOKE = """
mutation V($input: RevokePreviousNotificationCallbackConfigSecretInput!) {
  revokePreviousNotificationCallbackConfigSecret(input: $input) {
    callbackConfigId secretExpirationDateTime
  }
}
"""
DISABLE = f"""
mutation D($input: DisableNotificationCallbackConfigInput!) {{
  disableNotificationCallbackConfig(input: $input) {{ callbackConfig {{ {CONFIG_FIELDS} }} }}
}}
"""
ENABLE = f"""
mutation E($input: EnableNotificationCallbackConfigInput!) {{
  enableNotificationCallbackConfig(input: $input) {{ callbackConfig {{ {CONFIG_FIELDS} }} }}
}}
"""
RECOVER = """
mutation Rc($input: RecoverNotificationDeliveriesInput!) {
  recoverNotificationDeliveries(input: $input) { callbackConfigId recoveredCount }
}
"""
SUBSCRIBE = """
mutation S($input: SubscribeNotificationEventTypeInput!) {
  subscribeNotificationEventType(input: $input) { subscription { eventType } }
}
"""
PROFILE = f"{{ notificationProfile {{ callbackConfigs {{ {CONFIG_FIELDS} }} }} }}"


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    """The SMTP catcher of the module's service."""
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> AsyncIterator[Stack]:
    """Service (127.0.0.1 receivers allowed, retries 1000x faster, mailer on)
    and gateway."""
    running = await asyncio.to_thread(
        start_stack,
        tmp_path_factory.mktemp("endpoint-graphql"),
        HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true",
        HOOKKEEPER_DISPATCHER_ENABLED="true",
        HOOKKEEPER_RETRY_INTERVAL_SCALE="0.001",
        HOOKKEEPER_DISPATCHER_POLL_INTERVAL_SECONDS="0.1",
        HOOKKEEPER_SMTP_URL=smtp.url,
        HOOKKEEPER_MAILER_POLL_SECONDS="0.2",
    )
    yield running
    await asyncio.to_thread(running.stop)


async def _post(stack: Stack, token: str, query: str, variables: dict[str, Any]) -> Any:
    async with httpx.AsyncClient(timeout=20) as client:
        reply = await client.post(
            stack.url,
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert reply.status_code == 200, reply.text
    return reply.json()


async def _publish(stack: Stack, partner_id: str, event_id: str) -> None:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        await nt_grpc.NotificationServiceStub(channel).PublishEvent(
            nt.PublishEventRequest(
                parent=partner_id, event_type=EVENT, event_id=event_id, payload_json="{}"
            ),
            metadata=(("authorization", f"Bearer {SERVICE_TOKEN}"),),
        )


async def _profile_config(stack: Stack, token: str, config_id: str) -> dict[str, Any]:
    body = await _post(stack, token, PROFILE, {})
    [config] = [c for c in body["data"]["notificationProfile"]["callbackConfigs"]]
    assert config["id"] == config_id
    return dict(config)


async def _eventually(check: Any, within: float = 20) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_endpoint_health_over_graphql(stack: Stack, smtp: SmtpServer) -> None:
    receiver = await Receiver().start()
    try:
        partner_id, token = await asyncio.to_thread(stack.partner, "health-partner")
        parent = partner_id if partner_id.startswith("partners/") else f"partners/{partner_id}"
        created = await _post(
            stack,
            token,
            CREATE,
            {
                "input": {
                    "callbackUrl": receiver.url,
                    "apiKey": "gql-key",
                    "contactEmail": "ops@example.com",
                    "requestTimeoutSeconds": 2,
                    "signatureScheme": "STANDARD_WEBHOOKS",
                    "maxDeliveriesPerSecond": 50,
                }
            },
        )
        payload = created["data"]["createNotificationCallbackConfig"]
        config = payload["callbackConfig"]
        config_id = config["id"]
        old = payload["secret"]
        assert old.startswith("whsec_")
        assert config["state"] == "ACTIVE"
        assert config["disableReason"] is None and config["disableTime"] is None
        assert config["signatureScheme"] == "STANDARD_WEBHOOKS"
        assert config["maxDeliveriesPerSecond"] == 50
        receiver.secrets = [old]
        ref = {"callbackConfigId": config_id}
        await _post(stack, token, SUBSCRIBE, {"input": {"eventType": EVENT, **ref}})

        # Revocation: refused without an overlap; then one signature after.
        refused = await _post(stack, token, REVOKE, {"input": ref})
        assert refused["data"]["revokePreviousNotificationCallbackConfigSecret"] is None
        assert refused["errors"][0]["extensions"]["code"] == "FAILED_PRECONDITION"
        refreshed = await _post(
            stack, token, REFRESH, {"input": {**ref, "keepExistingSecretActive": True}}
        )
        new = refreshed["data"]["refreshNotificationCallbackConfigSecret"]["secret"]
        receiver.secrets = [new, old]
        revoked = await _post(stack, token, REVOKE, {"input": ref})
        current = await _profile_config(stack, token, config_id)
        assert revoked["data"]["revokePreviousNotificationCallbackConfigSecret"] == {
            "callbackConfigId": config_id,
            "secretExpirationDateTime": current["secretExpirationDateTime"],
        }
        await _publish(stack, parent, "gql-1")
        await receiver.wait_until(lambda: len(receiver.posts()) == 1)
        # The official library accepts it with the new secret, not the old.
        assert receiver.posts()[0].standard_webhooks_verified == [True, False]

        # A 410 disables at once; one e-mail; enable resumes the paused one.
        async def gone(_: Received) -> int:
            return 410

        receiver.behaviour = gone
        await _publish(stack, parent, "gql-2")

        async def disabled() -> dict[str, Any]:
            found = await _profile_config(stack, token, config_id)
            assert found["state"] == "DISABLED"
            return found

        found = await _eventually(disabled)
        assert "410" in found["disableReason"] and found["disableTime"]
        await asyncio.to_thread(smtp.inbox.wait_for, 1)
        again = await _post(stack, token, DISABLE, {"input": ref})
        assert again["data"]["disableNotificationCallbackConfig"]["callbackConfig"]["state"] == (
            "DISABLED"
        )
        await asyncio.sleep(1.0)  # a second e-mail would be here by now
        assert len([m for m in smtp.inbox.messages if config_id in str(m["Subject"])]) == 1

        async def ok(_: Received) -> int:
            return 200

        receiver.behaviour = ok
        enabled = await _post(stack, token, ENABLE, {"input": ref})
        assert enabled["data"]["enableNotificationCallbackConfig"]["callbackConfig"] == {
            **found,
            "state": "ACTIVE",
            "disableReason": None,
            "disableTime": None,
        }
        await receiver.wait_until(lambda: len(receiver.posts()) == 3)
        assert receiver.posts()[2].envelope()["eventId"] == "gql-2"
        assert receiver.posts()[2].standard_webhooks_verified == [True, False]

        # Recovery: nothing failed since the start, so nothing to recover.
        since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
        recovered = await _post(stack, token, RECOVER, {"input": {**ref, "since": since}})
        assert recovered["data"]["recoverNotificationDeliveries"] == {
            "callbackConfigId": config_id,
            "recoveredCount": 0,
        }

        # The cap: null removes it; 0 is refused naming the input field.
        cleared = await _post(
            stack, token, UPDATE, {"input": {**ref, "maxDeliveriesPerSecond": None}}
        )
        updated = cleared["data"]["updateNotificationCallbackConfig"]["callbackConfig"]
        assert updated["maxDeliveriesPerSecond"] is None
        bad = await _post(stack, token, UPDATE, {"input": {**ref, "maxDeliveriesPerSecond": 0}})
        assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "input.maxDeliveriesPerSecond" in str(bad["errors"][0])
        missing = await _post(
            stack, token, REVOKE, {"input": {"callbackConfigId": str(uuid.uuid4())}}
        )
        assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        malformed = await _post(stack, token, ENABLE, {"input": {"callbackConfigId": "nope"}})
        assert malformed["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    finally:
        await receiver.stop()
