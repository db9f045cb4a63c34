"""Pure parts of the gateway and of partner tokens: scalars, the partner
cache, bearer parsing, error classification, token shape and hash."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
import strawberry
from graphql import GraphQLError

from hookkeeper.gateway.auth import PartnerCache, bearer_token
from hookkeeper.gateway.errors import classify
from hookkeeper.gateway.scalars import (
    EmailAddress,
    LocalDateTime,
    Url,
    format_local_date_time,
    parse_local_date_time,
)
from hookkeeper.gateway.schema import build_schema
from hookkeeper.service.domain import partner_tokens
from hookkeeper.service.domain.errors import InvalidArgument


def test_local_date_time_is_utc_without_offset_or_fraction() -> None:
    moment = datetime(2007, 12, 3, 11, 15, 30, 999_999, tzinfo=timezone(timedelta(hours=1)))
    assert format_local_date_time(moment) == "2007-12-03T10:15:30"
    assert parse_local_date_time("2007-12-03T10:15:30") == datetime(
        2007, 12, 3, 10, 15, 30, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="naive"):
        format_local_date_time(datetime(2007, 12, 3))
    # Input mistakes are GraphQL errors (answered as validation failures).
    with pytest.raises(GraphQLError, match="no offset"):
        parse_local_date_time("2007-12-03T10:15:30+01:00")
    with pytest.raises(GraphQLError, match="such as"):
        parse_local_date_time("ops@example.com")


def test_partner_cache_expires_stays_bounded_in_bytes_and_forgets_partners() -> None:
    entry = len("partners/a") + 64 + PartnerCache.ENTRY_OVERHEAD_BYTES
    cache = PartnerCache(ttl_seconds=0.05, max_bytes=10 * entry)
    cache.put("a", "partners/a")
    assert cache.get("a") is None  # off until the revocation feed is live
    cache.reset(enabled=True)
    cache.put("a", "partners/a")
    assert cache.get("a") == "partners/a"
    time.sleep(0.06)
    assert cache.get("a") is None

    bounded = PartnerCache(ttl_seconds=60, max_bytes=2 * entry)
    bounded.reset(enabled=True)
    bounded.put("a", "partners/a")
    bounded.put("b", "partners/b")
    assert bounded.get("a") == "partners/a"  # a is now the most recently used
    bounded.put("c", "partners/c")
    assert bounded.get("b") is None
    assert bounded.get("a") == "partners/a"
    assert bounded.get("c") == "partners/c"
    assert bounded.size_bytes <= 2 * entry
    # A longer partner name costs more bytes: fewer entries fit.
    bounded.put("d", "partners/" + "d" * entry)
    assert bounded.get("a") is None
    assert bounded.get("c") is None
    assert bounded.size_bytes <= 2 * entry

    revoking = PartnerCache(ttl_seconds=60, max_bytes=10 * entry)
    revoking.reset(enabled=True)
    # An answer fetched before a revocation arrived is not remembered.
    before = revoking.epoch()
    revoking.forget_partner("partners/a")
    revoking.put("a0", "partners/a", before)
    assert revoking.get("a0") is None
    revoking.put("a1", "partners/a")
    revoking.put("a2", "partners/a")
    revoking.put("b1", "partners/b")
    revoking.forget_partner("partners/a")
    assert (revoking.get("a1"), revoking.get("a2")) == (None, None)
    assert revoking.get("b1") == "partners/b"
    revoking.reset(enabled=False)
    revoking.put("b1", "partners/b")
    assert revoking.get("b1") is None  # off while the revocation feed is down
    revoking.reset(enabled=True)
    revoking.put("b1", "partners/b")
    assert revoking.get("b1") == "partners/b"

    off = PartnerCache(ttl_seconds=0, max_bytes=10 * entry)
    off.reset(enabled=True)
    off.put("a", "partners/a")
    assert off.get("a") is None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_classify_gives_every_error_a_code_and_masks_surprises() -> None:
    assert classify(GraphQLError("Syntax Error: Unexpected <EOF>."))["extensions"] == {
        "code": "GRAPHQL_PARSE_FAILED"
    }
    assert classify(GraphQLError("Cannot query field 'x' on type 'Query'."))["extensions"] == {
        "code": "GRAPHQL_VALIDATION_FAILED"
    }
    variable = GraphQLError(
        "Variable '$input' has invalid value at .requestTimeoutSeconds: Int cannot represent"
    )
    assert classify(variable)["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "input.requestTimeoutSeconds",
    }
    surprise = GraphQLError(
        "password=hunter2 in SELECT", path=["x"], original_error=KeyError("hunter2")
    )
    masked = classify(surprise)
    assert masked["message"] == "internal error"
    assert masked["extensions"] == {"code": "INTERNAL"}
    kept = GraphQLError("gone", extensions={"code": "NOT_FOUND"})
    assert classify(kept)["extensions"] == {"code": "NOT_FOUND"}
    # A custom scalar refusing a literal during validation (found by the
    # gateway campaign as INTERNAL): the caller's mistake, not a bug.
    literal = GraphQLError(
        "Expected value of type 'LocalDateTime', but encountered error 'Invalid isoformat'",
        original_error=ValueError("Invalid isoformat string: ''"),
    )
    assert classify(literal)["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    scalar_variable = GraphQLError(
        "Variable '$input' has invalid value at .since: Expected value of type 'LocalDateTime'",
        original_error=ValueError("Invalid isoformat string"),
    )
    assert classify(scalar_variable)["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "input.since",
    }
    # The same exception raised by a resolver is still a masked bug.
    resolver = GraphQLError("x", path=["y"], original_error=ValueError("internal detail"))
    assert classify(resolver)["extensions"] == {"code": "INTERNAL"}


CREATE_WITH_VARIABLE = (
    "mutation($input: CreateNotificationCallbackConfigInput!) {"
    " createNotificationCallbackConfig(input: $input) { secret } }"
)
API_KEY = "api-key-that-must-never-be-echoed"


@pytest.mark.parametrize(
    ("variable", "field", "reason"),
    [
        (
            {"callbackUrl": "https://hooks.example.com", "apiKey": API_KEY},
            "input",
            "to include required field 'contactEmail'",
        ),
        (
            {
                "apiKey": API_KEY,
                "callbackUrl": "https://h.example.com",
                "contactEmail": "a@b.c",
                "extra": 1,
            },
            "input",
            "not to include unknown field 'extra'",
        ),
        (
            {"apiKey": 12345678987654321, "callbackUrl": "u", "contactEmail": "e"},
            "input.apiKey",
            "String cannot represent a non string value",
        ),
    ],
)
async def test_bad_variables_name_the_field_but_never_echo_the_value(
    variable: dict[str, object], field: str, reason: str
) -> None:
    # The real schema and graphql-core's own messages: variable coercion fails
    # before any resolver (or RPC) runs, so no context is needed.
    result = await build_schema().execute(CREATE_WITH_VARIABLE, variable_values={"input": variable})
    [error] = result.errors or []
    formatted = classify(error)
    assert formatted["extensions"] == {"code": "BAD_USER_INPUT", "field": field}
    assert reason in formatted["message"]
    assert str(variable["apiKey"]) not in formatted["message"]
    assert "found" not in formatted["message"]


def test_tokens_are_random_prefixed_and_hashed_with_sha256() -> None:
    first, second = partner_tokens.generate_token(), partner_tokens.generate_token()
    assert first != second
    assert first.startswith("hkp_")
    assert len(first) == 4 + 43  # 32 random bytes, URL-safe Base64
    assert partner_tokens.looks_like_token(first)
    assert not partner_tokens.looks_like_token("x" + first)
    assert partner_tokens.token_hash(first) == hashlib.sha256(first.encode()).hexdigest()


def test_display_names_and_partner_ids_are_checked() -> None:
    assert partner_tokens.check_display_name("  Acme Hotels ") == "Acme Hotels"
    for bad in ("", "   ", "x" * 201, "bad\nname"):
        with pytest.raises(InvalidArgument) as caught:
            partner_tokens.check_display_name(bad)
        assert caught.value.violations[0].field == "display_name"
    partner_id = partner_tokens.new_partner_id()
    assert partner_tokens.parse_partner_id(f"partners/{partner_id.upper()}") == partner_id
    with pytest.raises(InvalidArgument):
        partner_tokens.parse_partner_id("partners/not-a-uuid")


def test_inputs_and_payloads_redact_api_keys_and_secrets_in_reprs() -> None:
    from hookkeeper.gateway import callback_configs as gql

    created = gql.CreateNotificationCallbackConfigInput(
        callback_url=Url("https://hooks.example.com"),
        api_key=API_KEY,
        contact_email=EmailAddress("ops@example.com"),
    )
    updated = gql.UpdateNotificationCallbackConfigInput(
        callback_config_id=strawberry.ID("c-1"), api_key=API_KEY
    )
    refreshed = gql.RefreshNotificationCallbackConfigSecretPayload(
        callback_config_id=strawberry.ID("c-1"),
        secret=API_KEY,
        secret_expiration_date_time=LocalDateTime(datetime.now(UTC)),
        previous_secret_expiration_date_time=None,
    )
    for value in (created, updated, refreshed):
        assert API_KEY not in repr(value) and API_KEY not in str(value)
        assert "<redacted>" in repr(value)
    assert "https://hooks.example.com" in repr(created)


def test_the_gateway_service_token_stays_out_of_reprs() -> None:
    from hookkeeper.gateway.app import GatewayConfig
    from hookkeeper.gateway.rpc import call_options

    token = "service-token-that-must-never-be-shown"
    options = call_options(token, {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}, 5)
    assert ("authorization", f"Bearer {token}") in options.metadata
    config = GatewayConfig(service_token=token, max_body_bytes=1024, request_timeout_seconds=1)
    for value in (options, config):
        assert token not in repr(value)


def test_update_input_maps_every_given_field_onto_the_mask() -> None:
    from hookkeeper.gateway import callback_configs as gql

    every = gql.UpdateNotificationCallbackConfigInput(
        callback_config_id=strawberry.ID("c-1"),
        callback_url=Url("https://new.example.com"),
        api_key="new-key",
        contact_email=EmailAddress("new@example.com"),
        request_timeout_seconds=7,
    )
    request = gql._update_request("partners/p-1", every)
    assert request.callback_config.name == "partners/p-1/callbackConfigs/c-1"
    assert list(request.update_mask.paths) == [
        "callback_url",
        "api_key",
        "contact_email",
        "request_timeout_seconds",
    ]
    assert request.callback_config.callback_url == "https://new.example.com"
    assert request.callback_config.api_key == "new-key"
    assert request.callback_config.contact_email == "new@example.com"
    assert request.callback_config.request_timeout_seconds == 7

    # Omitted and null both keep the current value; nothing given is an error.
    one = gql.UpdateNotificationCallbackConfigInput(
        callback_config_id=strawberry.ID("c-1"), api_key=None, contact_email=EmailAddress("a@b.c")
    )
    assert list(gql._update_request("partners/p-1", one).update_mask.paths) == ["contact_email"]
    with pytest.raises(GraphQLError) as refused:
        gql._update_request(
            "partners/p-1",
            gql.UpdateNotificationCallbackConfigInput(callback_config_id=strawberry.ID("c-1")),
        )
    assert refused.value.extensions == {"code": "BAD_USER_INPUT", "field": "input"}
