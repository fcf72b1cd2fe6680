"""The web chat page at ``/``, driven in a real browser against a real server.

Chromium (Debian's package, not a Playwright download) runs headless through Python
Playwright; the server is ``python -m server_ref serve`` on the real default model (the tiny
random model where only the API-key check matters). The tests
stream a reply, stop one halfway (and check through ``/metrics`` that the server aborted it),
show server and network errors in the page, and run the page's SSE parser at every split point.

``LLM_SDK_WRITE_SCREENSHOT=1`` also writes the finished-conversation screenshot to
``docs/web-page.png`` (otherwise it goes to the test's tmp_path only, so a test run never
changes the working tree).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kit.live_server import LiveServer, live_server
from playwright.sync_api import (
    Browser,
    Page,
    Playwright,
    Request,
    Route,
    ViewportSize,
    sync_playwright,
)
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO_ROOT / "docs" / "web-page.png"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
API_KEY = "sk-web-test"
# Generation on a busy 2-core CPU: generous waits for the page to reach a state (deadlines for
# things that must happen, not speed assertions).
WAIT_MS = 120_000
METRICS_DEADLINE_S = 15.0

# The newest message is always the reply being written (a turn adds the user's, then it).
LAST_REPLY = ".msg-assistant:last-child"


def find_chromium() -> str | None:
    """``$CHROMIUM`` or the first Chromium-family browser on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set $CHROMIUM)")
    browser = playwright.chromium.launch(
        executable_path=executable, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def server(default_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real default model behind the full app, web page included."""
    args = ["--model", str(default_gguf), "--device", "cpu", "--kv-cache-mib", "128"]
    with live_server(args, log_dir=tmp_path_factory.mktemp("web-server")) as srv:
        yield srv


@pytest.fixture(scope="module")
def keyed_server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server that wants an API key; the tiny model is enough to show the error paths."""
    args = ["--model", str(tiny_gguf), "--device", "cpu", "--kv-cache-mib", "16"]
    args += ["--api-key", API_KEY]
    with live_server(args, log_dir=tmp_path_factory.mktemp("web-server-key")) as srv:
        yield srv


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (fresh storage); any uncaught JavaScript error fails the test."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


# -- helpers ---------------------------------------------------------------------------------


def open_page(page: Page, server: LiveServer) -> str:
    """Load ``/`` and wait until the page shows the served model; returns its id."""
    model_id = str(httpx.get(f"{server.base_url}/v1/models").json()["data"][0]["id"])
    page.goto(f"{server.base_url}/")
    page.wait_for_selector("#model-status[data-state=ready]")
    assert page.inner_text("#model-name") == model_id
    return model_id


def send(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def reply_text(page: Page) -> str:
    """The reply exactly as streamed (textContent: the text nodes, no layout)."""
    return page.text_content(f"{LAST_REPLY} .msg-body") or ""


def posted_messages(request: Request) -> list[dict[str, Any]]:
    """The ``messages`` of a chat request the page sent."""
    body = request.post_data_json
    assert isinstance(body, dict), body
    messages: list[dict[str, Any]] = body["messages"]
    return messages


def metric(base_url: str, sample_name: str, **labels: str) -> float:
    """Sum of the ``/metrics`` samples named ``sample_name`` whose labels include ``labels``."""
    text = httpx.get(f"{base_url}/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == sample_name and labels.items() <= sample.labels.items()
    )


def aborted(base_url: str) -> float:
    return metric(base_url, "server_ref:request_success_total", finished_reason="abort")


def running(base_url: str) -> float:
    return metric(base_url, "server_ref:num_requests_running")


# -- tests against the real model ------------------------------------------------------------


def test_conversation_streams_with_usage_and_screenshot(
    page: Page, server: LiveServer, tmp_path: Path
) -> None:
    open_page(page, server)
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "64")

    # Shift+Enter is a new line, not a send.
    page.fill("#prompt", "line one")
    page.press("#prompt", "Shift+Enter")
    assert page.input_value("#prompt") == "line one\n"
    assert page.locator(".msg").count() == 0

    send(page, "What is the capital of France?")
    page.wait_for_selector(f"{LAST_REPLY}.done")
    assert page.inner_text(".msg-user .msg-body") == "What is the capital of France?"
    assert "Paris" in reply_text(page)
    assert int(page.inner_text("#usage-prompt")) > 0
    assert int(page.inner_text("#usage-completion")) > 0
    assert page.inner_text("#usage-speed").endswith("tok/s")
    assert "completion tokens" in page.inner_text(f"{LAST_REPLY} .msg-meta")
    assert page.is_visible("#send") and page.is_hidden("#stop")

    # A second turn carries the first one as history.
    with page.expect_request("**/v1/chat/completions") as request_info:
        send(page, "And what is the capital of Italy?")
    messages = posted_messages(request_info.value)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert "Paris" in messages[1]["content"]
    page.wait_for_function("document.querySelectorAll('.msg-assistant.done').length === 2")

    shot = tmp_path / "web-page.png"
    page.screenshot(path=str(shot))
    if os.environ.get("LLM_SDK_WRITE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def test_stop_keeps_partial_reply_and_server_aborts(page: Page, server: LiveServer) -> None:
    open_page(page, server)
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "400")
    aborted_before = aborted(server.base_url)

    send(page, "Write a long story about a dragon.")
    # The reply grows in several steps: token by token, not all at once at the end.
    lengths = [0]
    while len(lengths) < 4:
        page.wait_for_function(
            f"n => document.querySelector('{LAST_REPLY} .msg-body').textContent.length > n",
            arg=lengths[-1],
        )
        lengths.append(len(reply_text(page)))
    assert lengths == sorted(set(lengths))

    page.click("#stop")
    page.wait_for_selector(f"{LAST_REPLY}.stopped")
    partial = reply_text(page)
    assert len(partial) >= lengths[-1]
    assert "Stopped" in page.inner_text(f"{LAST_REPLY} .msg-meta")
    assert page.is_visible("#send") and page.is_hidden("#stop")

    # The disconnect reached the engine: one more aborted request, and nothing left running.
    deadline = time.monotonic() + METRICS_DEADLINE_S
    while (aborted(server.base_url), running(server.base_url)) != (aborted_before + 1, 0):
        assert time.monotonic() < deadline, (
            f"aborted {aborted(server.base_url)} (before: {aborted_before}), "
            f"running {running(server.base_url)}"
        )
        time.sleep(0.1)

    # The stopped reply stays in the conversation and is sent back as history.
    page.fill("#max-tokens", "4")
    with page.expect_request("**/v1/chat/completions") as request_info:
        send(page, "Thanks.")
    messages = posted_messages(request_info.value)
    assert messages[1] == {"role": "assistant", "content": partial}
    page.wait_for_function("document.querySelectorAll('.msg-assistant.done').length === 1")

    page.click("#new-chat")
    assert page.locator(".msg").count() == 0
    assert page.is_visible("#empty")
    assert page.inner_text("#usage-completion") == "–"


def test_missing_api_key_is_shown_in_the_page(page: Page, keyed_server: LiveServer) -> None:
    page.goto(f"{keyed_server.base_url}/")
    page.wait_for_selector("#model-status[data-state=error]")
    assert page.inner_text("#model-name") == "API key needed"
    banner = page.inner_text("#banner")
    assert "401" in banner and "Missing API key" in banner and "Settings" in banner

    send(page, "Hello?")
    page.wait_for_selector(".msg-assistant.error .msg-error")
    error = page.inner_text(".msg-assistant .msg-error")
    assert "Error 401" in error and "Missing API key" in error
    assert page.input_value("#prompt") == "Hello?"  # back in the box for a retry

    page.fill("#api-key", API_KEY)
    page.wait_for_selector("#model-status[data-state=ready]")
    assert page.is_hidden("#banner")
    assert page.evaluate("sessionStorage.getItem('server_ref.apiKey')") == API_KEY
    assert API_KEY not in page.evaluate("JSON.stringify(localStorage)")

    page.fill("#max-tokens", "8")
    with page.expect_request("**/v1/chat/completions") as request_info:
        page.press("#prompt", "Enter")
    assert request_info.value.headers["authorization"] == f"Bearer {API_KEY}"
    # The failed turn is not history.
    assert [m["role"] for m in posted_messages(request_info.value)] == ["user"]
    page.wait_for_selector(f"{LAST_REPLY}.done")


def test_page_is_served_and_self_contained(server: LiveServer) -> None:
    # Offline by construction: nothing in the page points outside this server.
    for name, content_type in [
        ("", "text/html"),
        ("app.js", "javascript"),
        ("style.css", "text/css"),
    ]:
        r = httpx.get(f"{server.base_url}/{name}")
        assert r.status_code == 200 and content_type in r.headers["content-type"], name
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", r.text, re.I), name


# -- the page's error paths and parser, with the chat endpoint stubbed ----------------------


def sse(*events: Any) -> str:
    return "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


STUBS: dict[str, tuple[dict[str, Any] | str, list[str]]] = {
    "error-event": (
        {
            "status": 200,
            "content_type": "text/event-stream",
            "body": sse(
                chunk("Partial"),
                {"error": {"message": "The engine failed.", "type": "server_error"}},
                "[DONE]",
            ),
        },
        ["The server stopped with an error", "The engine failed.", "Partial"],
    ),
    "http-429": (
        {
            "status": 429,
            "headers": {"Retry-After": "3"},
            "content_type": "application/json",
            "body": json.dumps({"error": {"message": "Too many requests waiting."}}),
        },
        ["Error 429", "Too many requests waiting.", "try again in 3 s"],
    ),
    "http-502-not-json": (
        {"status": 502, "content_type": "text/html", "body": "Bad gateway"},
        ["Error 502", "Bad gateway"],
    ),
    "cut-off": (
        {"status": 200, "content_type": "text/event-stream", "body": sse(chunk("Half a"))},
        ["cut off", "Half a"],
    ),
    "network": ("connectionrefused", ["Could not reach the server"]),
}


@pytest.mark.parametrize("case", list(STUBS))
def test_errors_are_shown_readably(page: Page, server: LiveServer, case: str) -> None:
    open_page(page, server)
    stub, expected = STUBS[case]

    def handle(route: Route) -> None:
        if isinstance(stub, str):
            route.abort(stub)
        else:
            route.fulfill(**stub)

    page.route("**/v1/chat/completions", handle)
    send(page, "Hi")
    page.wait_for_selector(f"{LAST_REPLY}.error .msg-error")
    shown = page.inner_text(LAST_REPLY)
    for text in expected:
        assert text in shown
    assert page.input_value("#prompt") == "Hi"
    assert page.is_visible("#send") and page.is_hidden("#stop")


def test_sse_parser_at_every_split_point(page: Page, server: LiveServer) -> None:
    open_page(page, server)
    stream = (
        ": a comment\r\n"
        'data: {"a":\r\n'
        "data:1}\r\n"
        "\r\n"
        "event: ignored\n"
        "data: é 😀\n"
        "\n"
        "data: three\rdata: lines\r\rdata: [DONE]\n\n"
        "data: unterminated"
    )
    expected = ['{"a":\n1}', "é 😀", "three\nlines", "[DONE]"]
    results = page.evaluate(
        """text => {
            const out = [];
            for (let i = 0; i <= text.length; i++) {
                for (let j = i; j <= text.length; j++) {
                    const parser = new window.serverRefChat.SSEParser();
                    out.push([
                        ...parser.push(text.slice(0, i)),
                        ...parser.push(text.slice(i, j)),
                        ...parser.push(text.slice(j)),
                    ]);
                }
            }
            return out;
        }""",
        stream,
    )
    assert results and all(r == expected for r in results)
