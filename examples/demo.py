"""``make demo``: one verified notification, end to end, on a throwaway SQLite
database: starts ``hookkeeper serve`` (development mode) and the example
receiver, creates a configuration pointing at it, subscribes it to
GuestReviewSubmitted, publishes an event, and shows the receiver's output."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from hookkeeper.notifications.v1 import callback_config_pb2 as cc
from hookkeeper.notifications.v1 import callback_config_pb2_grpc as cc_grpc
from hookkeeper.notifications.v1 import notification_pb2 as nt
from hookkeeper.notifications.v1 import notification_pb2_grpc as nt_grpc
from hookkeeper.service.crypto.keyring import generate_key_entry

ROOT = Path(__file__).resolve().parents[1]
HOOKKEEPER = str(Path(sys.executable).parent / "hookkeeper")
TOKEN = "demo-token-" + "x" * 24
METADATA = (("authorization", f"Bearer {TOKEN}"),)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(log: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {text!r}:\n{log.read_text()}")
        time.sleep(0.1)


async def _drive(api: str, receiver_url: str, secrets_file: Path) -> None:
    async with grpc.aio.insecure_channel(api) as channel:
        configs = cc_grpc.CallbackConfigServiceStub(channel)
        notifications = nt_grpc.NotificationServiceStub(channel)
        created = await configs.CreateCallbackConfig(
            cc.CreateCallbackConfigRequest(
                parent="partners/demo",
                callback_config=cc.CallbackConfig(
                    callback_url=receiver_url,
                    api_key="demo-api-key",
                    contact_email="ops@example.com",
                    request_timeout_seconds=5,
                ),
            ),
            metadata=METADATA,
        )
        await asyncio.to_thread(secrets_file.write_text, created.secret + "\n")
        print(f"created {created.callback_config.name} -> {receiver_url}")
        await notifications.CreateSubscription(
            nt.CreateSubscriptionRequest(
                parent="partners/demo",
                subscription=nt.Subscription(
                    event_type="GuestReviewSubmitted",
                    callback_config=created.callback_config.name,
                ),
            ),
            metadata=METADATA,
        )
        published = await notifications.PublishEvent(
            nt.PublishEventRequest(
                parent="partners/demo",
                event_type="GuestReviewSubmitted",
                event_id="demo-review-1",
                payload_json='{"reviewId": "r-1", "rating": 5}',
            ),
            metadata=METADATA,
        )
        print(f"published demo-review-1: {published.deliveries[0].name}")


def main() -> None:
    """Runs the demo and stops everything it started."""
    with tempfile.TemporaryDirectory(prefix="hookkeeper-demo-") as tmp_dir:
        tmp = Path(tmp_dir)
        api = f"127.0.0.1:{_port()}"
        receiver_port = _port()
        secrets_file = tmp / "secrets.txt"
        secrets_file.write_text("")
        env = {
            "PATH": str(Path(sys.executable).parent),
            "HOOKKEEPER_VAR_DIR": str(tmp / "var"),
            "HOOKKEEPER_MASTER_KEYS": generate_key_entry(),
            "HOOKKEEPER_SERVICE_TOKENS": f"demo={TOKEN}",
            "HOOKKEEPER_GRPC_LISTEN": api,
            "HOOKKEEPER_ALLOW_INSECURE_CALLBACKS": "true",  # a local http receiver
            "HOOKKEEPER_LOG_FORMAT": "text",
            "RECEIVER_SECRETS_FILE": str(secrets_file),
            "PYTHONPATH": str(ROOT),
        }
        subprocess.run([HOOKKEEPER, "migrate"], env=env, check=True, capture_output=True)
        receiver_log, server_log = tmp / "receiver.log", tmp / "serve.log"
        with receiver_log.open("wb") as r_out, server_log.open("wb") as s_out:
            receiver = subprocess.Popen(
                [sys.executable, str(ROOT / "examples" / "receiver.py"), str(receiver_port)],
                env=env,
                stdout=r_out,
                stderr=subprocess.STDOUT,
            )
            server = subprocess.Popen(
                [HOOKKEEPER, "serve"], env=env, stdout=s_out, stderr=subprocess.STDOUT
            )
            try:
                _wait(receiver_log, "listening")
                _wait(server_log, "serving gRPC")
                asyncio.run(_drive(api, f"http://127.0.0.1:{receiver_port}/", secrets_file))
                _wait(receiver_log, "VERIFIED")
                print("\n--- example receiver output ---")
                print(receiver_log.read_text().strip())
            finally:
                server.terminate()
                receiver.terminate()
                server.wait(15)
                receiver.wait(15)


if __name__ == "__main__":
    main()
