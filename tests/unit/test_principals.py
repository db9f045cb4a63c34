"""Principals: parsing the TOML file, method and partner globs."""

from __future__ import annotations

import fnmatch
import re

import pytest

from hookkeeper.notifications.v1 import (
    callback_config_pb2,
    notification_pb2,
    partner_pb2,
    secret_rotation_pb2,
)
from hookkeeper.service.api.auth import request_partners, service_token_principals
from hookkeeper.service.domain.principals import (
    PrincipalsError,
    like_patterns,
    parse_principals,
    partner_in,
    token_sha256,
)

SECRETS = "hookkeeper.notifications.v1.SecretRotationService"
PUBLISH = "hookkeeper.notifications.v1.NotificationService/PublishEvent"
DIGEST = token_sha256("publisher-token-0123456789")

FILE = f"""
[[principal]]
name = "publisher"
token_sha256 = "{DIGEST}"
methods = ["{PUBLISH}"]
partners = ["acme-*", "globex"]

[[principal]]
name = "signer"
tls_identity = "signer.internal"
methods = ["hookkeeper.notifications.v1.SecretRotationService/Sign*"]
partners = ["*"]
"""


def test_parses_principals_and_their_globs() -> None:
    publisher, signer = parse_principals(FILE)
    assert publisher.name == "publisher"
    assert publisher.token_sha256 == DIGEST
    assert publisher.allows_method("/" + PUBLISH)
    assert not publisher.allows_method(
        "/hookkeeper.notifications.v1.SecretRotationService/RefreshSecret"
    )
    assert publisher.allows_partner("acme-eu")
    assert publisher.allows_partner("globex")
    assert not publisher.allows_partner("globex2")
    assert not publisher.allows_partner("ACME-eu")  # globs are case-sensitive
    assert not publisher.all_partners
    assert signer.tls_identity == "signer.internal"
    assert signer.token_sha256 is None
    assert signer.allows_method(
        "hookkeeper.notifications.v1.SecretRotationService/SignNotification"
    )
    assert signer.all_partners


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[[principal]]\nname = "x"\nmethods = ["*"]\npartners = ["*"]', "tls_identity"),
        (
            '[[principal]]\nname = "x"\ntoken_sha256 = "my-plain-token"\n'
            'methods = ["*"]\npartners = ["*"]',
            "token_sha256",
        ),
        (f'[[principal]]\nname = "x"\ntoken_sha256 = "{DIGEST}"\npartners = ["*"]', "methods"),
        (
            f'[[principal]]\nname = "x"\ntoken_sha256 = "{DIGEST}"\nmethods = []\npartners = ["*"]',
            "methods",
        ),
        (
            f'[[principal]]\nname = "x"\ntoken_sha256 = "{DIGEST}"\nmethods = ["*"]\n'
            'partners = ["[ab]*"]',
            "partners",
        ),
        (
            f'[[principal]]\nname = "x"\ntoken_sha256 = "{DIGEST}"\nmethods = ["*"]\n'
            'partners = ["*"]\nrole = "admin"',
            "role",
        ),
        ('[[principal]]\nname = ""\nmethods = ["*"]\npartners = ["*"]', "name"),
        ("principal = 3", "array of tables"),
        ("[[principal]\n", "not valid TOML"),
    ],
)
def test_bad_files_name_the_field(text: str, field: str) -> None:
    with pytest.raises(PrincipalsError, match=field):
        parse_principals(text)


def test_duplicate_tokens_are_refused() -> None:
    entry = f'[[principal]]\nname = "{{}}"\ntoken_sha256 = "{DIGEST}"\nmethods = ["*"]\n'
    entry += 'partners = ["*"]\n'
    with pytest.raises(PrincipalsError, match="token_sha256"):
        parse_principals(entry.format("a") + entry.format("b"))


def test_service_tokens_are_all_access_principals() -> None:
    (principal,) = service_token_principals("gateway=gateway-token-0123456789")
    assert principal.name == "gateway"
    assert principal.token_sha256 == token_sha256("gateway-token-0123456789")
    assert principal.allows_method("/anything.Service/Method")
    assert principal.all_partners


def test_partner_in_resource_names() -> None:
    assert partner_in("partners/p1/callbackConfigs/c") == "p1"
    assert partner_in("partners/p1") == "p1"
    assert partner_in("partners/-") is None
    assert partner_in("callbackConfigs/c") is None


def test_request_partners_reads_every_resource_field() -> None:
    name = "partners/p1/callbackConfigs/00000000-0000-0000-0000-000000000001"
    assert request_partners(secret_rotation_pb2.RefreshSecretRequest(name=name)) == (name, ["p1"])
    update = callback_config_pb2.UpdateCallbackConfigRequest(
        callback_config=callback_config_pb2.CallbackConfig(name=name)
    )
    assert request_partners(update) == (name, ["p1"])
    subscribe = notification_pb2.CreateSubscriptionRequest(
        parent="partners/p1",
        subscription=notification_pb2.Subscription(callback_config="partners/p2/callbackConfigs/x"),
    )
    assert request_partners(subscribe)[1] == ["p1", "p2"]
    # A token is never taken for a resource (nor recorded as one).
    token_request = partner_pb2.AuthenticatePartnerRequest(token="partners/p9")
    assert request_partners(token_request) == ("", [])


@pytest.mark.parametrize("glob", ["acme-*", "a?me", "100%_done*", "*"])
@pytest.mark.parametrize("partner", ["acme-1", "acme", "100%_done-x", "100x_done", "other"])
def test_like_patterns_match_at_least_the_glob(glob: str, partner: str) -> None:
    (pattern,) = like_patterns([glob])
    regex = "".join(
        ".*" if c == "%" else "." if c == "_" else c
        for c in pattern.replace("\\%", "\0").replace("\\_", "\1")
    )
    regex = regex.replace("\0", "%").replace("\1", "_")
    assert bool(re.fullmatch(regex, partner)) == fnmatch.fnmatchcase(partner, glob)
