"""End to end through the public GraphQL gateway: the delivery operations
(event types, subscribe / move / unsubscribe, the profile's subscriptions,
sendTestNotification) against real ``serve`` and ``gateway`` processes and a
real receiver that verifies the signature with the secret the partner got."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.gateway_stack import Stack, start_stack
from tests.support.receiver import Receiver

pytestmark = pytest.mark.e2e

CREATE = """
mutation Create($input: CreateNotificationCallbackConfigInput!) {
  createNotificationCallbackConfig(input: $input) { callbackConfig { id } secret }
}
"""
SUBSCRIBE = """
mutation S($input: SubscribeNotificationEventTypeInput!) {
  subscribeNotificationEventType(input: $input) { subscription { eventType callbackConfigId } }
}
"""
MOVE = """
mutation M($input: UpdateNotificationEventTypeSubscriptionInput!) {
  updateNotificationEventTypeSubscription(input: $input) {
    subscription { eventType callbackConfigId }
  }
}
"""
UNSUBSCRIBE = """
mutation U($input: UnsubscribeNotificationEventTypeInput!) {
  unsubscribeNotificationEventType(input: $input) { eventType }
}
"""
TEST = """
mutation T($input: SendTestNotificationInput!) {
  sendTestNotification(input: $input) {
    delivered httpStatus latencyMilliseconds error transactionId
  }
}
"""
PROFILE = "{ notificationProfile { subscriptions { eventType callbackConfigId } } }"


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """Service (development mode, so 127.0.0.1 receivers work) and gateway."""
    running = await asyncio.to_thread(
        start_stack,
        tmp_path_factory.mktemp("delivery-graphql"),
        HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true",
        HOOKKEEPER_DISPATCHER_ENABLED="true",
    )
    yield running
    await asyncio.to_thread(running.stop)


async def _post(
    stack: Stack, token: str, query: str, variables: dict[str, Any] | None = None
) -> Any:
    # Async: the receiver answering the test send runs on this same event loop.
    async with httpx.AsyncClient(timeout=20) as client:
        reply = await client.post(
            stack.url,
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_subscriptions_and_test_send_over_graphql(stack: Stack) -> None:
    receiver = await Receiver().start()
    try:
        _, token = await asyncio.to_thread(stack.partner, "delivery-partner")
        types = await _post(
            stack, token, "{ notificationEventTypes { name retryIntervalSeconds maxRetries } }"
        )
        by_name = {t["name"]: t for t in types["data"]["notificationEventTypes"]}
        assert by_name["GuestReviewSubmitted"] == {
            "name": "GuestReviewSubmitted",
            "retryIntervalSeconds": 25,
            "maxRetries": 50,
        }
        ids = []
        for _ in range(2):
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
                    }
                },
            )
            ids.append(created["data"]["createNotificationCallbackConfig"]["callbackConfig"]["id"])
            receiver.secrets.append(created["data"]["createNotificationCallbackConfig"]["secret"])
        sub = {"eventType": "MessageReceived", "callbackConfigId": ids[0]}
        first = await _post(stack, token, SUBSCRIBE, {"input": sub})
        assert first["data"]["subscribeNotificationEventType"]["subscription"] == sub
        again = await _post(stack, token, SUBSCRIBE, {"input": sub})  # idempotent
        assert again["data"]["subscribeNotificationEventType"]["subscription"] == sub
        moved = await _post(
            stack,
            token,
            MOVE,
            {"input": {"eventType": "MessageReceived", "callbackConfigId": ids[1]}},
        )
        assert (
            moved["data"]["updateNotificationEventTypeSubscription"]["subscription"][
                "callbackConfigId"
            ]
            == ids[1]
        )
        profile = await _post(stack, token, PROFILE)
        assert profile["data"]["notificationProfile"]["subscriptions"] == [
            {"eventType": "MessageReceived", "callbackConfigId": ids[1]}
        ]
        unknown = await _post(
            stack, token, SUBSCRIBE, {"input": {"eventType": "Nope", "callbackConfigId": ids[0]}}
        )
        assert unknown["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert unknown["errors"][0]["extensions"]["field"] == "input.eventType"

        sent = await _post(
            stack,
            token,
            TEST,
            {
                "input": {
                    "callbackConfigId": ids[1],
                    "eventType": "MessageReceived",
                    "payload": '{"messageId": "m-1"}',
                }
            },
        )
        outcome = sent["data"]["sendTestNotification"]
        assert outcome["delivered"] is True
        assert outcome["httpStatus"] == 200
        assert outcome["error"] is None
        post = receiver.posts()[-1]
        assert post.transaction_id == outcome["transactionId"]
        assert post.signature_matches == [1]  # the second configuration's secret
        assert post.headers["api-key"] == "gql-key"
        assert post.envelope()["payload"] == {"messageId": "m-1"}

        bad = await _post(
            stack,
            token,
            TEST,
            {
                "input": {
                    "callbackConfigId": ids[1],
                    "eventType": "MessageReceived",
                    "payload": "[1]",
                }
            },
        )
        assert bad["errors"][0]["extensions"]["field"] == "input.payload"

        gone = await _post(stack, token, UNSUBSCRIBE, {"input": {"eventType": "MessageReceived"}})
        assert gone["data"]["unsubscribeNotificationEventType"] == {"eventType": "MessageReceived"}
        profile = await _post(stack, token, PROFILE)
        assert profile["data"]["notificationProfile"]["subscriptions"] == []
    finally:
        await receiver.stop()
