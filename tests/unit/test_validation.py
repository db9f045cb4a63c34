"""Field validation as the public API defines it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookkeeper.service.domain import validation as v
from hookkeeper.service.domain.callback_config import ConfigFields, fields_to_update, validate_new
from hookkeeper.service.domain.errors import InvalidArgument


@pytest.mark.parametrize(
    "url",
    [
        "https://testcallbackurl.com",
        "https://example.com:8443/hooks/v1?partner=1",
        "https://[2606:4700::1111]/x",
        "HTTPS://Example.COM/path",
    ],
)
def test_accepts_public_https_urls(url: str) -> None:
    assert v.check_callback_url(url, allow_insecure=False) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "is required"),
        ("example.com/hook", "absolute URL"),
        ("/relative/path", "absolute URL"),
        ("ftp://example.com/x", "https (or http) scheme"),
        ("https://exa mple.com", "RFC 3986"),
        ("https://example.com/é", "RFC 3986"),
        ("https://example.com/x#frag", "fragment"),
        ("http://example.com/hook", "must use https"),
        ("https://127.0.0.1/hook", "public host"),
        ("https://localhost:8080/hook", "public host"),
        ("https://10.1.2.3/hook", "public host"),
        ("https://169.254.169.254/latest", "public host"),
        ("https://[::1]/hook", "public host"),
        ("https://intranet/hook", "public host"),
        ("https://" + "a" * 2100 + ".com", "at most"),
    ],
)
def test_refuses_bad_or_insecure_urls(url: str, reason: str) -> None:
    violation = v.check_callback_url(url, allow_insecure=False)
    assert violation is not None
    assert violation.field == "callback_url"
    assert reason in violation.description


@settings(max_examples=400)
@given(st.from_regex(v.COMMON_HTTPS_URL, fullmatch=True), st.booleans())
def test_the_fast_path_answers_as_rfc3986_does(url: str, insecure: bool) -> None:
    # Every URL of the usual shape gets the answer the full RFC 3986 path gives.
    assert v.check_callback_url(url, allow_insecure=insecure) == v.check_by_rfc3986(
        url, allow_insecure=insecure, field="callback_url"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/a/b?x=1&y=%2F",
        "https://10.0.0.1/hook",
        "https://hooks.example.com:65535/",
        "https://hooks.example.com:65536/",
        "https://hooks.example.com:0/",
        "https://999.1.1.1/x",
        "https://a.b/%zz",
        "https://user@hooks.example.com/",
    ],
)
def test_urls_near_the_fast_paths_edge_get_the_rfc3986_answer(url: str) -> None:
    for insecure in (False, True):
        assert v.check_callback_url(url, allow_insecure=insecure) == v.check_by_rfc3986(
            url, allow_insecure=insecure, field="callback_url"
        )


def test_insecure_setting_allows_http_and_loopback() -> None:
    assert v.check_callback_url("http://127.0.0.1:9000/hook", allow_insecure=True) is None
    # ...but never a non-URL or another scheme.
    assert v.check_callback_url("ftp://127.0.0.1/", allow_insecure=True) is not None


@pytest.mark.parametrize(
    "email", ["partner@email.com", "a.b+tag@sub.example.co", "x@localhost", "o'neil@ex.com"]
)
def test_accepts_html_spec_emails(email: str) -> None:
    assert v.check_contact_email(email) is None


@pytest.mark.parametrize(
    "email", ["", "plain", "a@", "@b.com", "a b@c.com", "a@b..com", "a@-b.com", "é@b.com"]
)
def test_refuses_invalid_emails(email: str) -> None:
    assert v.check_contact_email(email) is not None


@pytest.mark.parametrize(
    ("value", "ok"), [(0, False), (1, True), (60, True), (61, False), (-5, False)]
)
def test_timeout_range(value: int, ok: bool) -> None:
    assert (v.check_request_timeout(value) is None) is ok


def test_api_key_any_non_empty_utf8_up_to_a_mebibyte() -> None:
    assert v.check_api_key("k") is None
    assert v.check_api_key("ключ-🔑") is None
    assert v.check_api_key("x" * 64 * 1024) is None
    assert v.check_api_key("x" * (v.MAX_API_KEY_BYTES + 1)) is not None
    assert v.check_api_key("") is not None


def test_new_config_reports_every_bad_field_at_once() -> None:
    bad = ConfigFields(
        callback_url="nope", api_key="", contact_email="x", request_timeout_seconds=0
    )
    with pytest.raises(InvalidArgument) as caught:
        validate_new(bad, allow_insecure=False)
    assert [x.field for x in caught.value.violations] == [
        "callback_config.callback_url",
        "callback_config.api_key",
        "callback_config.contact_email",
        "callback_config.request_timeout_seconds",
    ]


def test_timeout_defaults_to_sixty() -> None:
    assert ConfigFields().timeout == 60
    validate_new(ConfigFields("https://example.com", "k", "a@b.co", None), allow_insecure=False)


def test_api_key_is_redacted_from_repr() -> None:
    fields = ConfigFields("https://example.com", "super-secret-key", "a@b.co", 5)
    assert "super-secret-key" not in repr(fields)


def test_update_mask_resolution() -> None:
    given = ConfigFields(callback_url="https://n.example.com", request_timeout_seconds=5)
    assert fields_to_update([], given) == ("callback_url", "request_timeout_seconds")
    assert fields_to_update(["*"], given) == (
        "callback_url",
        "api_key",
        "contact_email",
        "request_timeout_seconds",
        "max_deliveries_per_second",
    )
    assert fields_to_update(["contact_email", "api_key"], given) == ("api_key", "contact_email")
    with pytest.raises(InvalidArgument) as caught:
        fields_to_update(["name", "secret"], given)
    assert caught.value.violations[0].field == "update_mask"
