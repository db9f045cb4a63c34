"""Pure parts of the gateway and of partner tokens: scalars, the partner
cache, bearer parsing, error classification, token shape and hash."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from graphql import GraphQLError

from gateway.auth import PartnerCache, bearer_token
from gateway.errors import classify
from gateway.scalars import format_local_date_time, parse_local_date_time
from service.domain import partner_tokens
from service.domain.errors import InvalidArgument


def test_local_date_time_is_utc_without_offset_or_fraction() -> None:
    moment = datetime(2007, 12, 3, 11, 15, 30, 999_999, tzinfo=timezone(timedelta(hours=1)))
    assert format_local_date_time(moment) == "2007-12-03T10:15:30"
    assert parse_local_date_time("2007-12-03T10:15:30") == datetime(
        2007, 12, 3, 10, 15, 30, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="naive"):
        format_local_date_time(datetime(2007, 12, 3))
    with pytest.raises(ValueError, match="no offset"):
        parse_local_date_time("2007-12-03T10:15:30+01:00")


def test_partner_cache_expires_and_stays_bounded() -> None:
    cache = PartnerCache(ttl_seconds=0.05, max_entries=2)
    cache.put("a", "partners/a")
    assert cache.get("a") == "partners/a"
    time.sleep(0.06)
    assert cache.get("a") is None

    bounded = PartnerCache(ttl_seconds=60, max_entries=2)
    bounded.put("a", "partners/a")
    bounded.put("b", "partners/b")
    assert bounded.get("a") == "partners/a"  # a is now the most recently used
    bounded.put("c", "partners/c")
    assert bounded.get("b") is None
    assert bounded.get("a") == "partners/a"
    assert bounded.get("c") == "partners/c"

    off = PartnerCache(ttl_seconds=0, max_entries=2)
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
