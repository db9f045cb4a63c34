"""End to end: hostile requests to a real gateway never get HTTP 500. Each
is refused with a 4xx whose error names the field (or the limit), and
nothing changes behind it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.gateway_stack import Stack, start_stack

pytestmark = pytest.mark.e2e

PROFILE = "{ notificationProfile { callbackConfigs { id callbackUrl contactEmail } } }"
CREATE = """
mutation Create($input: CreateNotificationCallbackConfigInput!) {
  createNotificationCallbackConfig(input: $input) { callbackConfig { id } secret }
}
"""
ATTEMPTS = """
query Attempts($eventId: String) {
  notificationDeliveryAttempts(eventId: $eventId) { attempts { id } }
}
"""
SEND_TEST = """
mutation Send($input: SendTestNotificationInput!) {
  sendTestNotification(input: $input) { transactionId }
}
"""
GOOD_INPUT = {
    "callbackUrl": "https://hooks.example.com/in",
    "apiKey": "api-key-123",
    "contactEmail": "ops@example.com",
}
LONE_SURROGATE = "\ud800"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A service and a gateway on a fresh SQLite database."""
    running = start_stack(tmp_path_factory.mktemp("gateway-hostile"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def token(stack: Stack) -> str:
    """A partner token with one configuration (so changes would show)."""
    _, issued = stack.partner("Hostile Hotels")
    created = stack.post(CREATE, issued, {"input": GOOD_INPUT})
    assert created.status_code == 200, created.text
    return issued


def _raw(stack: Stack, body: str, token: str | None) -> httpx.Response:
    # Built by hand: a JSON encoder would refuse (or escape away) what a
    # hostile client sends.
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(stack.url, content=body.encode(), headers=headers, timeout=30)


def _profile(stack: Stack, token: str) -> Any:
    reply = stack.post(PROFILE, token)
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]


def _refused(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, error
    assert "Traceback" not in reply.text
    return dict(error)


def _envelope(query: str, variables_json: str) -> str:
    return f'{{"query": {json.dumps(query)}, "variables": {variables_json}}}'


def test_variables_nested_100000_levels_are_refused_naming_the_field(
    stack: Stack, token: str
) -> None:
    before = _profile(stack, token)
    deep = "[" * 100_000 + "]" * 100_000
    body = _envelope(CREATE, f'{{"input": {{"apiKey": {deep}}}}}')
    # Without a token nothing is even read.
    _refused(_raw(stack, body, None), 401, "UNAUTHENTICATED")
    error = _refused(_raw(stack, body, token), 400, "BAD_USER_INPUT")
    assert error["extensions"]["field"] == "input.apiKey"
    assert "nests deeper than" in error["message"]
    # Deeper than the limit but shallow enough for the JSON decoder: the walk
    # over the decoded variables names it the same way.
    body = _envelope(CREATE, '{"input": {"apiKey": ' + "[" * 40 + "]" * 40 + "}}")
    error = _refused(_raw(stack, body, token), 400, "BAD_USER_INPUT")
    assert error["extensions"]["field"] == "input.apiKey"
    # Anywhere else in the body.
    body = '{"query": "{ __typename }", "extensions": ' + "{" * 1 + '"a":' + deep + "}}"
    error = _refused(_raw(stack, body, token), 400, "BAD_REQUEST")
    assert error["extensions"]["field"] == "extensions.a"
    assert _profile(stack, token) == before


@pytest.mark.parametrize(
    ("query", "variables", "field"),
    [
        (CREATE, {"input": {**GOOD_INPUT, "apiKey": LONE_SURROGATE}}, "input.apiKey"),
        (
            CREATE,
            {"input": {**GOOD_INPUT, "callbackUrl": f"https://x.example/{LONE_SURROGATE}"}},
            "input.callbackUrl",
        ),
        (ATTEMPTS, {"eventId": LONE_SURROGATE}, "eventId"),
        (
            SEND_TEST,
            {
                "input": {
                    "callbackConfigId": "0190b3a8-0000-7000-8000-000000000000",
                    "eventType": "GuestReviewSubmitted",
                    "payload": json.dumps({"text": "x"})[:-1] + LONE_SURROGATE + "}",
                }
            },
            "input.payload",
        ),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(
    stack: Stack, token: str, query: str, variables: dict[str, Any], field: str
) -> None:
    before = _profile(stack, token)
    # json.dumps writes the lone surrogate as the escape "\ud800": valid JSON
    # that decodes to a string no UTF-8 encoder accepts.
    body = _envelope(query, json.dumps(variables))
    assert "\\ud800" in body
    error = _refused(_raw(stack, body, token), 400, "BAD_USER_INPUT")
    assert error["extensions"]["field"] == field
    assert "not valid Unicode" in error["message"]
    assert _profile(stack, token) == before


def test_lone_surrogates_in_the_document_itself(stack: Stack, token: str) -> None:
    before = _profile(stack, token)
    # In a GraphQL string literal (escaped): the parser refuses it.
    literal = (
        'mutation { createNotificationCallbackConfig(input: {callbackUrl: "https://a.example",'
        ' apiKey: "\\ud800", contactEmail: "a@example.com"}) { secret } }'
    )
    _refused(_raw(stack, json.dumps({"query": literal}), token), 400, "GRAPHQL_PARSE_FAILED")
    # As a raw character in the query text.
    error = _refused(
        _raw(stack, json.dumps({"query": "{ __typename } #" + LONE_SURROGATE}), token),
        400,
        "BAD_REQUEST",
    )
    assert error["extensions"]["field"] == "query"
    assert _profile(stack, token) == before


def test_300_chained_fragments_are_refused_quickly(stack: Stack, token: str) -> None:
    chained = "\n".join(f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(300))
    query = "{ ...F0 }\n" + chained + "\nfragment F300 on Query { __typename }"
    error = _refused(stack.post(query, token), 400, "GRAPHQL_VALIDATION_FAILED")
    assert "300 fragments" in error["message"] or "301 fragments" in error["message"]


def test_fragments_that_expand_exponentially_are_refused(stack: Stack, token: str) -> None:
    # 24 fragments, each spreading the next twice: 2**24 fields once expanded.
    doubling = "\n".join(
        f"fragment F{i} on Query {{ ...F{i + 1} a{i}: __typename ...F{i + 1} }}" for i in range(24)
    )
    query = "{ ...F0 }\n" + doubling + "\nfragment F24 on Query { __typename }"
    error = _refused(stack.post(query, token), 400, "GRAPHQL_VALIDATION_FAILED")
    assert "expands to more than" in error["message"]


def test_deep_selections_and_operation_selection(stack: Stack, token: str) -> None:
    deep = "{" + " notificationProfile {" * 40 + " __typename" + " }" * 41
    _refused(stack.post(deep, token), 400, "GRAPHQL_VALIDATION_FAILED")
    two = "query A { __typename } query B { __typename }"
    _refused(stack.post(two, token), 400, "OPERATION_RESOLUTION_FAILURE")
