"""Domain rules against hostile input: text that is not Unicode, JSON that
is too deep or not portable, forged page tokens, undecodable messages."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import notification_pb2 as nt
from hookkeeper.service.api.wire import first_bad_field
from hookkeeper.service.crypto.keyring import Keyring, generate_key_entry
from hookkeeper.service.domain import envelope, paging
from hookkeeper.service.domain.delivery_names import parse_subscription
from hookkeeper.service.domain.errors import InvalidArgument
from hookkeeper.service.domain.json_limits import MAX_JSON_DEPTH, exceeds_depth
from hookkeeper.service.domain.partner_tokens import looks_like_token
from hookkeeper.service.domain.text import check_scalar_text, is_scalar_text
from hookkeeper.service.domain.validation import check_api_key

LONE = "\ud800"


def _fields(error: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.field for v in error.value.violations]


def test_lone_surrogates_are_not_scalar_text() -> None:
    assert is_scalar_text("plain") and is_scalar_text("café 🎉")
    for bad in (LONE, "a\udfffb", "x" * 1000 + "\udc80"):
        assert not is_scalar_text(bad)
        violation = check_scalar_text(bad, "some.field")
        assert violation is not None and violation.field == "some.field"
    violation = check_api_key("key" + LONE, "callback_config.api_key")
    assert violation is not None and violation.field == "callback_config.api_key"
    event_violation = envelope.check_event_id("ev" + LONE)
    assert event_violation is not None and event_violation.field == "event_id"
    assert not looks_like_token("hkp_" + LONE)


def test_json_depth_is_measured_without_recursion() -> None:
    assert exceeds_depth("[" * 100_000)
    assert exceeds_depth("{" * 100_000)
    assert not exceeds_depth("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    assert exceeds_depth("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    # Brackets inside strings (escaped quotes too) are text, not nesting.
    assert not exceeds_depth(json.dumps({"a": "[" * 1000 + '\\"' + "{" * 1000}))
    # Exactly at the limit of openers in all: the quick count decides; one
    # more and the scan must tell nesting (too deep) from siblings (fine).
    assert not exceeds_depth("[" * MAX_JSON_DEPTH)
    assert exceeds_depth("[" * (MAX_JSON_DEPTH + 1))
    assert not exceeds_depth("[" + "[]," * MAX_JSON_DEPTH + "[]]")


@pytest.mark.parametrize(
    "payload",
    [
        "[" * 100_000,
        '{"a":' * 100_000,
        '{"a":' + "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1) + "}",
        '{"a":"\\ud800"}',  # a JSON escape of a lone surrogate
        '{"\\udfff":1}',
        '{"a":"' + LONE + '"}',
        '{"a":NaN}',
        '{"a":-Infinity}',
        '{"a":1e999}',
        '{"a":' + "9" * 5000 + "}",
        "[1,2]",
        "",
        "{",
    ],
)
def test_hostile_payloads_are_invalid_naming_the_field(payload: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        envelope.normalize_payload(payload)
    assert _fields(caught) == ["payload_json"]


def test_portable_payloads_pass_normalized() -> None:
    deep = '{"a":' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}"
    assert envelope.normalize_payload(deep) == deep
    assert envelope.normalize_payload('{"a": "\\u00e9\\u0000", "b": 1.5}') == (
        '{"a":"é\\u0000","b":1.5}'
    )


def _tokens(*entries: str) -> paging.PageTokens:
    return paging.PageTokens(Keyring.parse(",".join(entries)).derive_keys(b"page tokens"))


def test_page_tokens_round_trip_and_bind_to_their_list() -> None:
    key = generate_key_entry()
    tokens = _tokens(key)
    scope = paging.list_scope("ListCallbackConfigs", "acme")
    cursor = paging.Cursor(datetime(2026, 1, 1, tzinfo=UTC), "id-1")
    token = tokens.encode(cursor, scope)
    assert tokens.decode(token, scope) == cursor
    assert tokens.decode("", scope) is None
    assert "id-1" not in token and token.isascii()
    forged = [
        # Another partner's list, another method, another filter.
        (token, paging.list_scope("ListCallbackConfigs", "other")),
        (token, paging.list_scope("ListDeliveryAttempts", "acme")),
        (token, paging.list_scope("ListCallbackConfigs", "acme", "")),
        # The old unsigned format, hand-made.
        (base64.urlsafe_b64encode(b'{"t":"2026-01-01T00:00:00+00:00","i":"x"}').decode(), scope),
        ("garbage", scope),
        ("!!!!", scope),
        ("A" * 5000, scope),
        ("é" * 10, scope),
        # The right list under a server key nobody holds.
        (_tokens(generate_key_entry()).encode(cursor, scope), scope),
    ]
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    edited = raw.replace(b"id-1", b"id-2")
    forged.append((base64.urlsafe_b64encode(edited).decode().rstrip("="), scope))
    for bad, where in forged:
        with pytest.raises(InvalidArgument) as caught:
            tokens.decode(bad, where)
        assert _fields(caught) == ["page_token"], bad


def test_page_tokens_survive_a_master_key_rotation() -> None:
    old, new = generate_key_entry(), generate_key_entry()
    scope = paging.list_scope("ListCallbackConfigs", "acme")
    cursor = paging.Cursor(datetime(2026, 1, 1, tzinfo=UTC), "id-1")
    issued_before = _tokens(old).encode(cursor, scope)
    assert _tokens(old, new).decode(issued_before, scope) == cursor
    with pytest.raises(InvalidArgument):
        _tokens(new).decode(issued_before, scope)


def test_page_size_and_single_page_lists() -> None:
    assert paging.page_size(0) == paging.DEFAULT_PAGE_SIZE
    assert paging.page_size(5000) == paging.MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument):
        paging.page_size(-1)
    paging.no_page_token("")
    with pytest.raises(InvalidArgument) as caught:
        paging.no_page_token("anything")
    assert _fields(caught) == ["page_token"]


def test_the_first_undecodable_field_is_named() -> None:
    request = cc.CreateCallbackConfigRequest(
        parent="partners/acme",
        callback_config=cc.CallbackConfig(callback_url="https://x.example", api_key="k"),
    )
    good = request.SerializeToString()
    descriptor = cc.CreateCallbackConfigRequest.DESCRIPTOR
    assert first_bad_field(descriptor, good) == ""
    # Invalid UTF-8 in a nested string field (field 3 = api_key).
    nested = b"\x1a\x03\xed\xa0\x80"
    bad_nested = good + b"\x12" + bytes([len(nested)]) + nested
    assert first_bad_field(descriptor, bad_nested) == "callback_config.api_key"
    # Truncated: the nested message claims more bytes than are left.
    assert first_bad_field(descriptor, good[:-3]) == "callback_config"
    # A length running past the end of the top level.
    assert first_bad_field(nt.PublishEventRequest.DESCRIPTOR, b"\x22\x7fab") == "payload_json"
    # A group wire type (never valid in proto3) on an unknown field number.
    assert first_bad_field(descriptor, b"\xfb\x01") == ""
    # Messages nested past any sane depth never recurse in the walker.
    assert first_bad_field(descriptor, b"\x12\xff\xff\xff\x0f" * 10_000) == "callback_config"


def test_subscription_names_carry_only_event_type_shaped_ids() -> None:
    assert parse_subscription("partners/a/subscriptions/GuestReviewSubmitted").event_type == (
        "GuestReviewSubmitted"
    )
    # A NUL would reach PostgreSQL (which refuses it) as an internal error.
    for bad in ("x\x00", "x" * 65, "é", "a b"):
        with pytest.raises(InvalidArgument) as caught:
            parse_subscription(f"partners/a/subscriptions/{bad}")
        assert _fields(caught) == ["name"]
