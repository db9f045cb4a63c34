"""The schema the gateway serves (read back by introspection over HTTP)
against the public documentation seeds, type by type and field by field:
names, kinds, nullability, defaults and descriptions."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hookkeeper.gateway import auth, rpc
from hookkeeper.gateway.app import GatewayConfig, create_app
from hookkeeper.gateway.schema import build_schema
from tests.support.seeds import COPIES, SEEDS, SeedType, seed_texts, types

INTROSPECTION = """
query Schema {
  __schema {
    mutationType { name fields { name args { name type { ...Ref } } type { ...Ref } } }
    types {
      name kind description
      fields { name description type { ...Ref } }
      inputFields { name description defaultValue type { ...Ref } }
    }
  }
}
fragment Ref on __Type { kind name ofType { kind name ofType { kind name } } }
"""
BUILT_IN = {"Boolean", "ID", "Int", "String"}


def _seed_types() -> dict[str, SeedType]:
    merged: dict[str, SeedType] = {}
    for text in seed_texts().values():
        for name, seed in types(text).items():
            assert merged.get(name, seed) == seed, f"the seeds disagree about {name}"
            merged[name] = seed
    return merged


TOKEN = "hkp_schema-test-token-" + "t" * 24


def _named(ref: dict[str, Any]) -> tuple[str, bool]:
    """(type name, non-null?) of a field type that is a named type or T!."""
    if ref["kind"] == "NON_NULL":
        return ref["ofType"]["name"], True
    return ref["name"], False


@pytest.fixture(scope="module")
async def served() -> dict[str, Any]:
    """The introspection answer of the ASGI app to an authenticated partner
    (the token is in the partner cache, so no RPC is made)."""
    stubs = rpc.Stubs("127.0.0.1:1")  # never called
    cache = auth.PartnerCache(30, 64 * 1024)
    cache.reset(enabled=True)  # as if the revocation feed were live
    cache.put(auth.digest(TOKEN), "partners/0190b3a8-0000-7000-8000-000000000000")
    app = create_app(
        build_schema(),
        stubs,
        GatewayConfig(
            service_token="unused-" + "x" * 16, max_body_bytes=1 << 20, request_timeout_seconds=5
        ),
        cache,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        reply = await client.post(
            "/graphql",
            json={"query": INTROSPECTION},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    await stubs.close()
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert "errors" not in body
    schema: dict[str, Any] = body["data"]["__schema"]
    return schema


ISSUE_13_ADDITIONS = {
    "CreateNotificationCallbackConfigInput": {"signatureScheme", "maxDeliveriesPerSecond"},
    "NotificationCallbackConfig": {
        "state",
        "disableReason",
        "disableTime",
        "signatureScheme",
        "maxDeliveriesPerSecond",
    },
}


def test_seed_copies_match_the_shared_seeds() -> None:
    if not SEEDS.is_dir():
        pytest.skip("../shared/seeds is not beside this checkout")
    assert seed_texts(COPIES) == seed_texts(SEEDS)


def test_every_seed_type_is_served_field_by_field(served: dict[str, Any]) -> None:
    by_name = {t["name"]: t for t in served["types"]}
    seeds = _seed_types()
    assert {"CreateNotificationCallbackConfigInput", "NotificationCallbackConfig"} <= set(seeds)
    for name, seed in seeds.items():
        assert name in by_name, f"{name} is not served"
        got = by_name[name]
        assert got["kind"] == seed.kind, name
        if name not in BUILT_IN:
            assert got["description"] == seed.description, name
        if seed.kind == "SCALAR":
            continue
        listed = got["fields"] if seed.kind == "OBJECT" else got["inputFields"]
        fields = {f["name"]: f for f in listed}
        # Issue 13 adds fields (contract names); anything else differs from the seed.
        added = ISSUE_13_ADDITIONS.get(name, set())
        assert set(fields) == set(seed.fields) | added, f"{name}: fields differ from the seed"
        for extra in added:
            if seed.kind == "INPUT_OBJECT":
                # An added input field is optional: every seed request still works.
                assert fields[extra]["type"]["kind"] != "NON_NULL", f"{name}.{extra}"
        for field_name, expected in seed.fields.items():
            type_name, non_null = _named(fields[field_name]["type"])
            where = f"{name}.{field_name}"
            assert type_name == expected.type_name, where
            assert non_null == expected.non_null, where
            assert fields[field_name]["description"] == expected.description, where


def test_input_defaults_are_the_documented_ones(served: dict[str, Any]) -> None:
    by_name = {t["name"]: t for t in served["types"]}

    def default(type_name: str, field: str) -> str | None:
        fields = {f["name"]: f for f in by_name[type_name]["inputFields"]}
        value: str | None = fields[field]["defaultValue"]
        return value

    assert default("RefreshNotificationCallbackConfigSecretInput", "keepExistingSecretActive") == (
        "false"
    )
    assert default("CreateNotificationCallbackConfigInput", "requestTimeoutSeconds") == "60"


def test_mutations_take_a_required_input_and_return_their_payload(
    served: dict[str, Any],
) -> None:
    mutations = {f["name"]: f for f in served["mutationType"]["fields"]}
    for operation in seed_texts():
        assert operation in mutations, operation
        field = mutations[operation]
        args = {a["name"]: _named(a["type"]) for a in field["args"]}
        stem = operation[0].upper() + operation[1:]
        assert args == {"input": (f"{stem}Input", True)}, operation
        assert _named(field["type"])[0] == f"{stem}Payload", operation
    for extra in ("updateNotificationCallbackConfig", "deleteNotificationCallbackConfig"):
        assert extra in mutations


def test_custom_scalars_are_served(served: dict[str, Any]) -> None:
    kinds = {t["name"]: t["kind"] for t in served["types"]}
    for scalar in ("Url", "EmailAddress", "LocalDateTime", "ID"):
        assert kinds[scalar] == "SCALAR"
