"""End to end: every error the public gateway answers, from real processes
over real HTTP. Each has ``extensions.code`` and a message a partner can act
on; none leaks internals (tracebacks, SQL, tokens, secrets)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.gateway_stack import SERVICE_TOKEN, Stack, start_stack
from tests.support.processes import free_port

pytestmark = pytest.mark.e2e

# Secrets live two seconds here, so an expired one is quick to get.
VALIDITY_SECONDS = 2.0
MAX_BODY = 64 * 1024
PROFILE = "{ notificationProfile { callbackConfigs { id } } }"
CREATE = """
mutation Create($input: CreateNotificationCallbackConfigInput!) {
  createNotificationCallbackConfig(input: $input) {
    callbackConfig { id secretExpirationDateTime } secret
  }
}
"""
REFRESH = """
mutation Refresh($id: ID!, $keep: Boolean!) {
  refreshNotificationCallbackConfigSecret(
    input: {callbackConfigId: $id, keepExistingSecretActive: $keep}
  ) { callbackConfigId secret }
}
"""
GOOD_INPUT = {
    "callbackUrl": "https://hooks.example.com/in",
    "apiKey": "api-key-123",
    "contactEmail": "ops@example.com",
}
LEAKS = ("Traceback", "sqlalchemy", "SELECT ", "INSERT ", 'File "', SERVICE_TOKEN, "hkp_")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A service with two-second secrets and a gateway with a small body limit."""
    running = start_stack(
        tmp_path_factory.mktemp("gateway-errors"),
        HOOKKEEPER_SECRET_VALIDITY_DAYS=str(VALIDITY_SECONDS / 86400),
        HOOKKEEPER_GATEWAY_MAX_BODY_BYTES=str(MAX_BODY),
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def token(stack: Stack) -> str:
    """A partner token for this module."""
    return stack.partner("Error Hotels")[1]


def _errors(reply: httpx.Response, status: int) -> list[dict[str, Any]]:
    assert reply.status_code == status, reply.text
    for leak in LEAKS:
        assert leak not in reply.text, leak
    body = reply.json()
    found: list[dict[str, Any]] = body["errors"]
    assert found
    for error in found:
        assert error["message"]
        assert "code" in error["extensions"]
    return found


def _only(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    found = _errors(reply, status)
    assert [e["extensions"]["code"] for e in found] == [code], found
    return found[0]


def _count(stack: Stack, token: str) -> int:
    reply = stack.post(PROFILE, token)
    return len(reply.json()["data"]["notificationProfile"]["callbackConfigs"])


def test_unauthenticated_without_a_token_and_nothing_runs(stack: Stack, token: str) -> None:
    before = _count(stack, token)
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
        reply = stack.post(CREATE, None, {"input": GOOD_INPUT}, headers=headers)
        error = _only(reply, 401, "UNAUTHENTICATED")
        assert "Authorization: Bearer" in error["message"]
        assert reply.headers["www-authenticate"].startswith("Bearer")
    assert _count(stack, token) == before


def test_unauthenticated_with_a_wrong_token_and_nothing_runs(stack: Stack, token: str) -> None:
    before = _count(stack, token)
    for wrong in ("hkp_" + "x" * 43, token[:-1], "not-a-token"):
        reply = stack.post(CREATE, wrong, {"input": GOOD_INPUT})
        error = _only(reply, 401, "UNAUTHENTICATED")
        assert error["message"] == "the partner token is not valid"
        assert wrong not in reply.text
    assert _count(stack, token) == before


def test_bad_user_input_names_every_bad_field(stack: Stack, token: str) -> None:
    before = _count(stack, token)
    bad = {
        "callbackUrl": "ftp://hooks.example.com",
        "apiKey": "",
        "contactEmail": "not-an-email",
        "requestTimeoutSeconds": 61,
    }
    reply = stack.post(CREATE, token, {"input": bad})
    error = _only(reply, 200, "BAD_USER_INPUT")
    assert error["path"] == ["createNotificationCallbackConfig"]
    fields = [v["field"] for v in error["extensions"]["fieldViolations"]]
    assert fields == [
        "input.callbackUrl",
        "input.apiKey",
        "input.contactEmail",
        "input.requestTimeoutSeconds",
    ]
    assert error["extensions"]["field"] == "input.callbackUrl"
    assert "input.requestTimeoutSeconds: must be between 1 and 60" in error["message"]
    assert reply.json()["data"] == {"createNotificationCallbackConfig": None}
    assert _count(stack, token) == before


def test_bad_user_input_for_a_single_field_and_for_a_malformed_id(stack: Stack, token: str) -> None:
    reply = stack.post(CREATE, token, {"input": {**GOOD_INPUT, "requestTimeoutSeconds": 0}})
    error = _only(reply, 200, "BAD_USER_INPUT")
    assert error["extensions"]["field"] == "input.requestTimeoutSeconds"

    reply = stack.post(REFRESH, token, {"id": "not-a-uuid", "keep": False})
    error = _only(reply, 200, "BAD_USER_INPUT")
    assert error["extensions"]["field"] == "input.callbackConfigId"

    nothing = 'mutation { updateNotificationCallbackConfig(input: {callbackConfigId: "%s"}) '
    nothing += "{ callbackConfig { id } } }"
    reply = stack.post(nothing % uuid.uuid4(), token)
    assert _only(reply, 200, "BAD_USER_INPUT")["extensions"]["field"] == "input"


def test_bad_user_input_for_a_variable_of_the_wrong_type(stack: Stack, token: str) -> None:
    variables = {"input": {**GOOD_INPUT, "requestTimeoutSeconds": "sixty"}}
    error = _only(stack.post(CREATE, token, variables), 400, "BAD_USER_INPUT")
    assert error["extensions"]["field"] == "input.requestTimeoutSeconds"
    assert "Int" in error["message"]


def test_bad_user_input_for_a_null_variable_given_to_a_required_argument(
    stack: Stack, token: str
) -> None:
    # Declared nullable, passed null, used where the argument is required:
    # graphql-core finds it while executing (the error has a path), and it
    # is still the caller's mistake. Found by the hypothesis campaign.
    query = (
        "query ($pageSize: Int) { notificationDeliveryAttempts(pageSize: $pageSize) "
        "{ nextPageToken } }"
    )
    error = _only(stack.post(query, token, {"pageSize": None}), 200, "BAD_USER_INPUT")
    assert error["extensions"]["field"] == "pageSize"
    assert (
        error["message"]
        == "Argument 'pageSize' has an invalid value: required, it may not be null."
    )


def test_not_found(stack: Stack, token: str) -> None:
    missing = str(uuid.uuid4())
    error = _only(stack.post(REFRESH, token, {"id": missing, "keep": False}), 200, "NOT_FOUND")
    assert error["message"] == f"callback configuration '{missing}' not found"
    assert error["path"] == ["refreshNotificationCallbackConfigSecret"]


def test_failed_precondition_keeping_an_expired_secret(stack: Stack, token: str) -> None:
    created = stack.post(CREATE, token, {"input": GOOD_INPUT}).json()
    config_id = created["data"]["createNotificationCallbackConfig"]["callbackConfig"]["id"]
    time.sleep(VALIDITY_SECONDS + 0.5)
    reply = stack.post(REFRESH, token, {"id": config_id, "keep": True})
    error = _only(reply, 200, "FAILED_PRECONDITION")
    assert "expired" in error["message"]
    # Nothing changed: a refresh that does not keep the old secret still works.
    fresh = stack.post(REFRESH, token, {"id": config_id, "keep": False}).json()
    assert fresh["data"]["refreshNotificationCallbackConfigSecret"]["callbackConfigId"] == (
        config_id
    )


def test_internal_when_the_gateway_is_misconfigured(stack: Stack, token: str) -> None:
    url = stack.start_gateway(
        "gateway-wrong-token", HOOKKEEPER_GATEWAY_SERVICE_TOKEN="wrong-service-token-0123456789"
    )
    error = _only(stack.post(PROFILE, token, url=url), 500, "INTERNAL")
    assert error["message"] == "internal error"


def test_unavailable_and_deadline_exceeded(stack: Stack, token: str) -> None:
    url = stack.start_gateway(
        "gateway-no-service", HOOKKEEPER_GATEWAY_GRPC_TARGET=f"127.0.0.1:{free_port()}"
    )
    _only(stack.post(PROFILE, token, url=url), 503, "UNAVAILABLE")
    hurry = {"Request-Timeout": "0.000001"}
    # Out of time while authenticating a new token: nothing ran.
    fresh = stack.partner("Hurried Hotels")[1]
    _only(stack.post(PROFILE, fresh, headers=hurry), 504, "DEADLINE_EXCEEDED")
    # Out of time in a resolver (the partner is cached): that field fails.
    stack.post(PROFILE, fresh)
    error = _only(stack.post(PROFILE, fresh, headers=hurry), 200, "DEADLINE_EXCEEDED")
    assert error["path"] == ["notificationProfile", "callbackConfigs"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"variables": {}}', '"query" must be a non-empty string'),
        (b'{"query": "{ __typename }", "variables": [1]}', '"variables" must be a JSON object'),
        (b'{"query": "{ __typename }", "operationName": 5}', '"operationName" must be a string'),
    ],
)
def test_malformed_bodies(stack: Stack, token: str, body: bytes, message: str) -> None:
    reply = httpx.post(
        stack.url,
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert message in _only(reply, 400, "BAD_REQUEST")["message"]


def test_too_large_body(stack: Stack, token: str) -> None:
    huge = {"input": {**GOOD_INPUT, "apiKey": "k" * (MAX_BODY + 1)}}
    error = _only(stack.post(CREATE, token, huge), 413, "BAD_REQUEST")
    assert str(MAX_BODY) in error["message"]


def test_syntax_error(stack: Stack, token: str) -> None:
    error = _only(
        stack.post("mutation { createNotificationCallbackConfig(", token),
        400,
        "GRAPHQL_PARSE_FAILED",
    )
    assert error["message"].startswith("Syntax Error")


def test_unknown_operation(stack: Stack, token: str) -> None:
    reply = stack.post("mutation { deleteEverything { ok } }", token)
    error = _only(reply, 400, "GRAPHQL_VALIDATION_FAILED")
    assert "Cannot query field 'deleteEverything' on type 'Mutation'" in error["message"]

    named = httpx.post(
        stack.url,
        json={"query": "query A { __typename } query B { __typename }", "operationName": "C"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    error = _only(named, 400, "OPERATION_RESOLUTION_FAILURE")
    assert "Unknown operation named 'C'" in error["message"]


def test_over_deep_query(stack: Stack, token: str) -> None:
    deep = "{ notificationProfile { callbackConfigs { id " + "{ a " * 10 + "}" * 10 + " } } }"
    error = _only(stack.post(deep, token), 400, "GRAPHQL_VALIDATION_FAILED")
    assert "exceeds maximum operation depth of 10" in error["message"]


def test_too_many_aliases(stack: Stack, token: str) -> None:
    aliased = "{ " + " ".join(f"a{i}: __typename" for i in range(30)) + " }"
    error = _only(stack.post(aliased, token), 400, "GRAPHQL_VALIDATION_FAILED")
    assert "aliases" in error["message"]
