"""End to end in a real browser: headless Chromium (Debian's package, driven
by Playwright over CDP, no downloaded browser) opens the gateway's GraphiQL,
runs the create mutation with a partner token and reads the result off the
page."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.support.ci import skip_or_fail
from tests.support.gateway_stack import Stack, start_stack

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MUTATION = """mutation {
  createNotificationCallbackConfig(input: {
    callbackUrl: "https://browser.example.com/hook"
    apiKey: "browser-key"
    requestTimeoutSeconds: 42
    contactEmail: "browser@example.com"
  }) {
    callbackConfig { id callbackUrl requestTimeoutSeconds contactEmail }
    secret
  }
}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A service and gateway for the browser."""
    running = start_stack(tmp_path_factory.mktemp("gateway-browser"))
    yield running
    running.stop()


def _editor(selector: str) -> str:
    # GraphiQL 3's editors are CodeMirror 5 instances hung on their DOM nodes.
    return f"document.querySelector('{selector} .CodeMirror').CodeMirror"


def _wait(page: Page, expression: str, timeout: float = 20) -> None:
    # Polls with page.evaluate (CDP, unaffected by the page's CSP) rather than
    # wait_for_function, whose in-page eval the gateway's CSP rightly forbids.
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            shown = page.evaluate("document.body.innerText.slice(0, 3000)")
            raise AssertionError(f"timed out waiting for {expression}; page shows:\n{shown}")
        time.sleep(0.1)


def test_graphiql_runs_the_create_mutation(stack: Stack, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        skip_or_fail(
            "chromium is not installed and `make test` could not install it (needs root):"
            " sudo ./scripts/ensure-system-deps.sh test",
            "chromium",
        )
    _, token = stack.partner("Browser Hotels")
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
        )
        try:
            page = browser.new_page()
            # Every request must go to the gateway itself (no CDN).
            page.on(
                "request",
                lambda r: (
                    None if r.url.startswith(stack.url.rsplit("/", 1)[0]) else outside.append(r.url)
                ),
            )
            page.goto(stack.url, wait_until="load")
            page.wait_for_selector(".graphiql-query-editor .CodeMirror", timeout=20_000)
            page.evaluate(f"{_editor('.graphiql-query-editor')}.setValue({json.dumps(MUTATION)})")
            headers = json.dumps(json.dumps({"Authorization": f"Bearer {token}"}))
            # The page opens with the headers editor shown (the other is hidden).
            visible = (
                "document.querySelector("
                "'.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror')"
            )
            _wait(page, f"!!({visible})")
            page.evaluate(f"({visible}).CodeMirror.setValue({headers})")
            page.click(".graphiql-execute-button")
            _wait(
                page,
                "!!document.querySelector('.result-window') &&"
                " document.querySelector('.result-window').innerText.includes('secret')",
            )
            text = page.evaluate(
                "document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"
            )
        finally:
            browser.close()
    result = json.loads(text)
    payload = result["data"]["createNotificationCallbackConfig"]
    assert payload["callbackConfig"]["callbackUrl"] == "https://browser.example.com/hook"
    assert payload["callbackConfig"]["requestTimeoutSeconds"] == 42
    assert len(payload["secret"]) == 24
    assert outside == []
    # The browser created it for this partner: the API sees the same config.
    profile = stack.post("{ notificationProfile { callbackConfigs { id } } }", token).json()
    ids = [c["id"] for c in profile["data"]["notificationProfile"]["callbackConfigs"]]
    assert ids == [payload["callbackConfig"]["id"]]
