"""End to end through the public GraphQL gateway: real ``hookkeeper serve`` and
``hookkeeper gateway`` processes, real HTTP. Both documentation examples are
sent verbatim; partners are created and revoked with the real CLI."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from hookkeeper.service.domain.partner_tokens import token_hash
from tests.support.gateway_stack import Stack, start_stack
from tests.support.processes import HOOKKEEPER, run_cli
from tests.support.seeds import example, seed_texts

pytestmark = pytest.mark.e2e

SEED_ID = "1969081f-8380-4dbd-9a19-c26fc1747b06"
LOCAL_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
PROFILE = "{ notificationProfile { callbackConfigs { id callbackUrl contactEmail "
PROFILE += "requestTimeoutSeconds secretExpirationDateTime } } }"
CREATE = """
mutation Create($input: CreateNotificationCallbackConfigInput!) {
  createNotificationCallbackConfig(input: $input) { callbackConfig { id } secret }
}
"""
REFRESH = """
mutation Refresh($id: ID!) {
  refreshNotificationCallbackConfigSecret(input: {callbackConfigId: $id}) { secret }
}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One service + gateway for the module; no partner cache, so revocation
    shows at once (the cache itself is tested on its own)."""
    running = start_stack(
        tmp_path_factory.mktemp("gateway-api"), HOOKKEEPER_GATEWAY_PARTNER_CACHE_SECONDS="0"
    )
    yield running
    running.stop()


def _moment(text: str) -> datetime:
    assert LOCAL_DATE_TIME.fullmatch(text), text
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _data(reply: httpx.Response) -> dict[str, object]:
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert "errors" not in body, body
    data: dict[str, object] = body["data"]
    return data


def _create(stack: Stack, token: str, url: str = "https://hooks.example.com/in") -> str:
    reply = stack.post(
        CREATE,
        token,
        {"input": {"callbackUrl": url, "apiKey": "k-1", "contactEmail": "ops@example.com"}},
    )
    created = _data(reply)["createNotificationCallbackConfig"]
    assert isinstance(created, dict)
    return str(created["callbackConfig"]["id"])


def _profile_ids(stack: Stack, token: str) -> list[str]:
    profile = _data(stack.post(PROFILE, token))["notificationProfile"]
    assert isinstance(profile, dict)
    return [c["id"] for c in profile["callbackConfigs"]]


def test_create_seed_example_verbatim(stack: Stack) -> None:
    _, token = stack.partner("Seed Create Hotels")
    before = datetime.now(UTC).replace(microsecond=0)
    reply = stack.post(example(seed_texts()["createNotificationCallbackConfig"]), token)
    data = _data(reply)
    assert list(data) == ["createNotificationCallbackConfig"]
    payload = data["createNotificationCallbackConfig"]
    assert isinstance(payload, dict)
    assert list(payload) == ["callbackConfig", "secret"]
    config = payload["callbackConfig"]
    assert list(config) == [
        "id",
        "callbackUrl",
        "secretExpirationDateTime",
        "requestTimeoutSeconds",
        "contactEmail",
    ]
    assert str(uuid.UUID(config["id"])) == config["id"]
    assert config["callbackUrl"] == "https://testcallbackurl.com"
    assert config["requestTimeoutSeconds"] == 50
    assert config["contactEmail"] == "partner@email.com"
    expires = _moment(config["secretExpirationDateTime"])
    assert before + timedelta(days=365) <= expires <= datetime.now(UTC) + timedelta(days=365)
    assert isinstance(payload["secret"], str)
    assert len(payload["secret"]) == 24
    assert _profile_ids(stack, token) == [config["id"]]


def test_refresh_seed_example_verbatim_with_a_real_id(stack: Stack) -> None:
    _, token = stack.partner("Seed Refresh Hotels")
    config_id = _create(stack, token)
    text = example(seed_texts()["refreshNotificationCallbackConfigSecret"])
    assert SEED_ID in text
    before = datetime.now(UTC).replace(microsecond=0)
    data = _data(stack.post(text.replace(SEED_ID, config_id), token))
    payload = data["refreshNotificationCallbackConfigSecret"]
    assert isinstance(payload, dict)
    assert list(payload) == [
        "callbackConfigId",
        "secret",
        "secretExpirationDateTime",
        "previousSecretExpirationDateTime",
    ]
    assert payload["callbackConfigId"] == config_id
    assert len(payload["secret"]) == 24
    after = datetime.now(UTC)
    new_expiry = _moment(payload["secretExpirationDateTime"])
    assert before + timedelta(days=365) <= new_expiry <= after + timedelta(days=365)
    # keepExistingSecretActive: true → the old secret lives three more days.
    previous = _moment(payload["previousSecretExpirationDateTime"])
    assert before + timedelta(days=3) <= previous <= after + timedelta(days=3)


def test_refresh_without_keep_ends_the_old_secret_now(stack: Stack) -> None:
    _, token = stack.partner("Refresh Now Hotels")
    config_id = _create(stack, token)
    before = datetime.now(UTC).replace(microsecond=0)
    reply = stack.post(
        'mutation { refreshNotificationCallbackConfigSecret(input: {callbackConfigId: "'
        + config_id
        + '"}) { previousSecretExpirationDateTime } }',
        token,
    )
    payload = _data(reply)["refreshNotificationCallbackConfigSecret"]
    assert isinstance(payload, dict)
    previous = _moment(payload["previousSecretExpirationDateTime"])
    assert before <= previous <= datetime.now(UTC)


def test_timeout_defaults_to_60(stack: Stack) -> None:
    _, token = stack.partner("Default Timeout Hotels")
    _create(stack, token)
    profile = _data(stack.post(PROFILE, token))["notificationProfile"]
    assert isinstance(profile, dict)
    assert profile["callbackConfigs"][0]["requestTimeoutSeconds"] == 60


def test_update_profile_and_delete(stack: Stack) -> None:
    _, token = stack.partner("Lifecycle Hotels")
    first = _create(stack, token, "https://one.example.com/hook")
    second = _create(stack, token, "https://two.example.com/hook")
    assert _profile_ids(stack, token) == [first, second]

    update = """
    mutation($input: UpdateNotificationCallbackConfigInput!) {
      updateNotificationCallbackConfig(input: $input) {
        callbackConfig { id callbackUrl requestTimeoutSeconds contactEmail }
      }
    }"""
    changes = {"callbackConfigId": first, "requestTimeoutSeconds": 15}
    updated = _data(stack.post(update, token, {"input": changes}))
    assert updated["updateNotificationCallbackConfig"] == {
        "callbackConfig": {
            "id": first,
            "callbackUrl": "https://one.example.com/hook",
            "requestTimeoutSeconds": 15,
            "contactEmail": "ops@example.com",
        }
    }
    delete = """
    mutation($id: ID!) {
      deleteNotificationCallbackConfig(input: {callbackConfigId: $id}) { callbackConfigId }
    }"""
    deleted = _data(stack.post(delete, token, {"id": second}))
    assert deleted == {"deleteNotificationCallbackConfig": {"callbackConfigId": second}}
    assert _profile_ids(stack, token) == [first]


def test_a_second_partner_can_neither_see_nor_change_the_first_ones_config(
    stack: Stack,
) -> None:
    _, owner = stack.partner("Owner Hotels")
    _, other = stack.partner("Other Hotels")
    config_id = _create(stack, owner)
    assert _profile_ids(stack, other) == []

    attempts = {
        "refresh": (REFRESH, {"id": config_id}),
        "update": (
            "mutation($id: ID!) { updateNotificationCallbackConfig(input: "
            '{callbackConfigId: $id, callbackUrl: "https://evil.example.com"}) '
            "{ callbackConfig { id } } }",
            {"id": config_id},
        ),
        "delete": (
            "mutation($id: ID!) { deleteNotificationCallbackConfig(input: "
            "{callbackConfigId: $id}) { callbackConfigId } }",
            {"id": config_id},
        ),
    }
    missing = str(uuid.uuid4())
    for name, (query, variables) in attempts.items():
        theirs = stack.post(query, other, variables).json()
        absent = stack.post(query, other, {"id": missing}).json()
        # Exactly like an id that does not exist (only the id differs).
        assert theirs["errors"][0]["extensions"] == {"code": "NOT_FOUND"}, name
        assert (
            theirs["errors"][0]["message"].replace(config_id, missing)
            == (absent["errors"][0]["message"])
        ), name
    profile = _data(stack.post(PROFILE, owner))["notificationProfile"]
    assert isinstance(profile, dict)
    assert [c["callbackUrl"] for c in profile["callbackConfigs"]] == [
        "https://hooks.example.com/in"
    ]


def test_partner_cli_prints_the_id_then_the_token_and_stores_only_its_hash(
    stack: Stack,
) -> None:
    out = run_cli(["partner", "create", "Hash Check Hotels"], stack.env).strip().splitlines()
    assert len(out) == 2
    partner_id, token = out
    assert str(uuid.UUID(partner_id)) == partner_id
    assert token.startswith("hkp_")
    assert len(token) >= 40
    database = Path(stack.env["HOOKKEEPER_VAR_DIR"]) / "hookkeeper.db"
    with sqlite3.connect(database) as conn:
        rows = conn.execute(
            "SELECT token_sha256 FROM partner_tokens WHERE partner_id = ?", (partner_id,)
        ).fetchall()
        dump = "\n".join(conn.iterdump())
    assert rows == [(token_hash(token),)]
    assert token not in dump
    assert _profile_ids(stack, token) == []


def test_revoked_tokens_are_refused(stack: Stack) -> None:
    partner_id, token = stack.partner("Revoked Hotels")
    assert _profile_ids(stack, token) == []
    second = run_cli(["partner", "issue-token", partner_id], stack.env).strip().splitlines()[-1]
    assert _profile_ids(stack, second) == []

    # `-` reads the token from stdin, keeping it out of argv and shell history.
    revoked = subprocess.run(
        [HOOKKEEPER, "partner", "revoke-token", "-"],
        input=token + "\n",
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert token not in revoked.stdout + revoked.stderr
    refused = stack.post(PROFILE, token)
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert _profile_ids(stack, second) == []  # only that token was revoked

    run_cli(["partner", "revoke-token", "--partner", partner_id], stack.env)
    assert stack.post(PROFILE, second).status_code == 401
    again = subprocess.run(
        [HOOKKEEPER, "partner", "revoke-token", second],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode != 0
    assert "no live token matches" in again.stderr


def test_the_schema_is_only_for_authenticated_partners(stack: Stack) -> None:
    introspection = "{ __schema { mutationType { name } } }"
    for token in (None, "hkp_" + "x" * 43):
        refused = stack.post(introspection, token)
        assert refused.status_code == 401
        assert refused.json()["data"] is None
        assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    _, token = stack.partner("Schema Readers")
    reply = stack.post(introspection, token)
    assert reply.json() == {"data": {"__schema": {"mutationType": {"name": "Mutation"}}}}


def test_graphiql_page_and_assets_come_from_the_gateway(stack: Stack) -> None:
    page = httpx.get(stack.url, headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(sources) >= 4
    for source in sources:
        assert source.startswith("/graphql/static/"), source  # no CDN
        asset = httpx.get(httpx.URL(stack.url).join(source), timeout=10)
        assert asset.status_code == 200, source
        assert len(asset.content) > 100, source
