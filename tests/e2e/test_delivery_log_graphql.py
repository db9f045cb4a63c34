"""End to end through the public GraphQL gateway: a partner reads its
delivery log and redelivers a notification that exhausted its retries, with
real ``serve`` and ``gateway`` processes and a real receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from hookkeeper.notifications.v1 import notification_pb2 as pb
from hookkeeper.notifications.v1 import notification_pb2_grpc as pb_grpc
from tests.support.gateway_stack import SERVICE_TOKEN, Stack, start_stack
from tests.support.receiver import Received, Receiver

pytestmark = pytest.mark.e2e

CREATE = """
mutation C($input: CreateNotificationCallbackConfigInput!) {
  createNotificationCallbackConfig(input: $input) { callbackConfig { id } secret }
}
"""
SUBSCRIBE = """
mutation S($input: SubscribeNotificationEventTypeInput!) {
  subscribeNotificationEventType(input: $input) { subscription { eventType } }
}
"""
LOG = """
query L($eventId: String, $pageSize: Int!, $pageToken: String) {
  notificationDeliveryAttempts(eventId: $eventId, pageSize: $pageSize, pageToken: $pageToken) {
    attempts {
      id deliveryId eventId eventType callbackConfigId transactionId attemptNumber
      startDateTime latencyMilliseconds httpStatus succeeded error
    }
    nextPageToken
  }
}
"""
REDELIVER = """
mutation R($input: RedeliverNotificationInput!) {
  redeliverNotification(input: $input) { deliveryId transactionId }
}
"""


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """Development mode (127.0.0.1 receivers) with retries 10,000 times faster:
    GuestReviewSubmitted's 50 retries every 25 s take about 0.1 s."""
    running = await asyncio.to_thread(
        start_stack,
        tmp_path_factory.mktemp("delivery-log"),
        HOOKKEEPER_ALLOW_INSECURE_CALLBACKS="true",
        HOOKKEEPER_DISPATCHER_ENABLED="true",
        HOOKKEEPER_RETRY_INTERVAL_SCALE="0.0001",
        HOOKKEEPER_DISPATCHER_POLL_INTERVAL_SECONDS="0.02",
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


async def _log(stack: Stack, token: str, event_id: str | None) -> list[dict[str, Any]]:
    attempts: list[dict[str, Any]] = []
    page_token = None
    while True:
        reply = await _post(
            stack, token, LOG, {"eventId": event_id, "pageSize": 20, "pageToken": page_token}
        )
        page = reply["data"]["notificationDeliveryAttempts"]
        attempts += page["attempts"]
        page_token = page["nextPageToken"]
        if page_token is None:
            return attempts


async def test_partner_reads_its_log_and_redelivers_a_failed_notification(
    stack: Stack,
) -> None:
    answer = {"status": 500}

    async def behaviour(_: Received) -> int:
        return answer["status"]

    receiver = await Receiver().start()
    receiver.behaviour = behaviour
    try:
        partner_id, token = await asyncio.to_thread(stack.partner, "log-partner")
        _, other_token = await asyncio.to_thread(stack.partner, "other-partner")
        created = await _post(
            stack,
            token,
            CREATE,
            {
                "input": {
                    "callbackUrl": receiver.url,
                    "apiKey": "log-key",
                    "contactEmail": "ops@example.com",
                }
            },
        )
        config_id = created["data"]["createNotificationCallbackConfig"]["callbackConfig"]["id"]
        receiver.secrets.append(created["data"]["createNotificationCallbackConfig"]["secret"])
        await _post(
            stack,
            token,
            SUBSCRIBE,
            {"input": {"eventType": "GuestReviewSubmitted", "callbackConfigId": config_id}},
        )
        async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
            await pb_grpc.NotificationServiceStub(channel).PublishEvent(
                pb.PublishEventRequest(
                    parent=f"partners/{partner_id}",
                    event_type="GuestReviewSubmitted",
                    event_id="review-1",
                    payload_json='{"reviewId": 1}',
                ),
                metadata=(("authorization", f"Bearer {SERVICE_TOKEN}"),),
            )
        # 1 attempt + 50 retries, every one answered 500.
        await receiver.wait_until(lambda: len(receiver.posts()) >= 51, within=60)

        async def exhausted() -> list[dict[str, Any]]:
            for _ in range(200):
                attempts = await _log(stack, token, "review-1")
                if len(attempts) == 51:
                    return attempts
                await asyncio.sleep(0.1)
            raise AssertionError("the failed attempts were not all recorded")

        attempts = await exhausted()
        assert [a["attemptNumber"] for a in attempts] == list(range(51, 0, -1))  # newest first
        first = attempts[-1]
        assert first["eventId"] == "review-1"
        assert first["eventType"] == "GuestReviewSubmitted"
        assert first["callbackConfigId"] == config_id
        assert first["httpStatus"] == 500
        assert first["succeeded"] is False
        assert "500" in first["error"]
        assert len({a["transactionId"] for a in attempts}) == 1
        assert first["transactionId"] == receiver.posts()[0].transaction_id
        assert len(first["startDateTime"]) == len("2007-12-03T10:15:30")

        # Another partner sees nothing and cannot redeliver it.
        assert await _log(stack, other_token, "review-1") == []
        delivery_id = first["deliveryId"]
        refused = await _post(stack, other_token, REDELIVER, {"input": {"deliveryId": delivery_id}})
        assert refused["errors"][0]["extensions"]["code"] == "NOT_FOUND"

        answer["status"] = 204
        redelivered = await _post(stack, token, REDELIVER, {"input": {"deliveryId": delivery_id}})
        assert redelivered["data"]["redeliverNotification"] == {
            "deliveryId": delivery_id,
            "transactionId": first["transactionId"],
        }
        await receiver.wait_until(lambda: len(receiver.posts()) >= 52, within=30)
        for _ in range(100):
            latest = (await _log(stack, token, "review-1"))[0]
            if latest["succeeded"]:
                break
            await asyncio.sleep(0.1)
        assert latest["succeeded"] is True
        assert latest["httpStatus"] == 204
        assert latest["error"] is None
        assert receiver.posts()[-1].signature_matches == [0]  # signed with the partner's secret

        again = await _post(stack, token, REDELIVER, {"input": {"deliveryId": "not-a-uuid"}})
        assert again["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert again["errors"][0]["extensions"]["field"] == "input.deliveryId"
    finally:
        await receiver.stop()
