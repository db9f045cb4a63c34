"""End to end: ``hookkeeper keys generate`` and ``hookkeeper keys rotate`` on
the embedded SQLite default, with real server processes driven by grpcurl.

The operator's procedure: append a generated key to HOOKKEEPER_MASTER_KEYS,
restart the servers (they still open every row sealed under the old key and
seal new values under the new one), run ``keys rotate`` while they serve, then
drop the old key. The store-level rotation runs on both databases in
tests/integration/test_use_cases.py.
"""

from __future__ import annotations

import base64
import re
import sqlite3
import uuid
from pathlib import Path

import pytest

from tests.support.grpcurl import CONFIGS, SECRETS, Grpcurl
from tests.support.processes import (
    Process,
    base_env,
    free_port,
    run_cli,
    start,
    wait_for_grpc_health,
)

pytestmark = pytest.mark.e2e

TOKEN = "rotate-token-" + "c" * 24
PAYLOAD = base64.b64encode(b'{"eventType":"RESERVATION_CREATED"}').decode()
# Fixed, so that signatures before and after rotation must be identical.
TIMESTAMP = "2025-11-24T16:00:00Z"
ENTRY = re.compile(r"(k\d{8}-[0-9a-f]{6}):([A-Za-z0-9+/]{43}=)")


def _generate() -> str:
    """``hookkeeper keys generate``: exactly one ``id:base64key`` line."""
    output = run_cli(["keys", "generate"], base_env({}))
    assert output.endswith("\n") and output.count("\n") == 1, repr(output)
    entry = output.strip()
    match = ENTRY.fullmatch(entry)
    assert match, "unexpected key entry shape"
    assert len(base64.b64decode(match[2])) == 32
    return entry


def _key_ids(database: Path) -> set[str]:
    """Every key id the raw database holds, API keys and secrets alike."""
    with sqlite3.connect(database) as conn:
        rows = conn.execute(
            "SELECT api_key_key_id FROM callback_configs UNION SELECT key_id FROM callback_secrets"
        ).fetchall()
    return {row[0] for row in rows}


def test_generate_then_rotate_reseals_everything_while_serving(tmp_path: Path) -> None:
    old, new = _generate(), _generate()
    old_id, new_id = old.split(":")[0], new.split(":")[0]
    assert old_id != new_id and old.split(":")[1] != new.split(":")[1]
    env = base_env(
        {
            "HOOKKEEPER_VAR_DIR": str(tmp_path / "var"),
            "HOOKKEEPER_SERVICE_TOKENS": f"e2e={TOKEN}",
        }
    )
    database = tmp_path / "var" / "hookkeeper.db"
    run_cli(["migrate"], env)

    def serve(name: str, master_keys: str) -> tuple[Process, Grpcurl]:
        address = f"127.0.0.1:{free_port()}"
        process = start(
            ["serve"],
            {**env, "HOOKKEEPER_MASTER_KEYS": master_keys, "HOOKKEEPER_GRPC_LISTEN": address},
            tmp_path / f"{name}.log",
        )
        try:
            wait_for_grpc_health(address)
        except TimeoutError:
            process.kill()
            raise AssertionError(f"server did not start:\n{process.output()}") from None
        return process, Grpcurl(address, TOKEN)

    def sign(client: Grpcurl, name: str) -> str:
        reply = client.ok(
            f"{SECRETS}/SignNotification",
            {"name": name, "payload": PAYLOAD, "timestamp": TIMESTAMP},
        )
        return str(reply["signature"])

    # Under the old key alone: a configuration with two active secrets.
    process, client = serve("old", old)
    try:
        created = client.ok(
            f"{CONFIGS}/CreateCallbackConfig",
            {
                "parent": f"partners/p-{uuid.uuid4().hex[:10]}",
                "callback_config": {
                    "callback_url": "https://hooks.example.com/rotate",
                    "api_key": "rotate-api-key",
                    "contact_email": "ops@example.com",
                },
            },
        )
        name = created["callbackConfig"]["name"]
        client.ok(f"{SECRETS}/RefreshSecret", {"name": name, "keep_existing_secret_active": True})
        before = sign(client, name)
        assert before.count(",") == 1, before  # both secrets sign
    finally:
        assert process.terminate() == 0, process.output()
    assert _key_ids(database) == {old_id}

    # The new key appended: old rows still get and sign; rotation runs online.
    both = f"{old},{new}"
    process, client = serve("both", both)
    try:
        assert (
            client.ok(f"{CONFIGS}/GetCallbackConfig", {"name": name})["callbackConfig"]["name"]
            == name
        )
        assert sign(client, name) == before
        rotated = run_cli(["keys", "rotate"], {**env, "HOOKKEEPER_MASTER_KEYS": both})
        assert rotated.strip() == "resealed 3 values under the newest key"  # 1 API key, 2 secrets
        again = run_cli(["keys", "rotate"], {**env, "HOOKKEEPER_MASTER_KEYS": both})
        assert again.strip() == "resealed 0 values under the newest key"
        assert _key_ids(database) == {new_id}
        assert sign(client, name) == before
    finally:
        assert process.terminate() == 0, process.output()

    # The old key dropped: everything opens under the new key alone.
    process, client = serve("new", new)
    try:
        assert (
            client.ok(f"{CONFIGS}/GetCallbackConfig", {"name": name})["callbackConfig"]["name"]
            == name
        )
        assert sign(client, name) == before
    finally:
        assert process.terminate() == 0, process.output()
    for log in tmp_path.glob("*.log"):
        text = log.read_text(errors="replace")
        for value in (old.split(":")[1], new.split(":")[1], "rotate-api-key", TOKEN):
            assert value not in text, log.name
