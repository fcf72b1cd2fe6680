"""Every program in ``examples/`` runs as a subprocess against the real default model.

One ``python -m server_ref serve`` process serves all of them (module scope). Its window is
capped at 1024 tokens so that ``fit_long_conversation.py`` overflows it with a short
conversation and the prefills stay cheap on a CPU. Answers are greedy (temperature 0), so
checks on their content (Paris) are stable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kit.live_clients import FINISHED, parse_series
from kit.live_server import REPO_ROOT, LiveServer, free_port, live_server

pytestmark = pytest.mark.e2e

EXAMPLES = REPO_ROOT / "examples"
RUN_TIMEOUT_S = 600.0  # generation on a busy 2-core CPU; a deadline, not a speed check
CONTEXT = 1024


@pytest.fixture(scope="module")
def server(default_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    device = os.environ.get("LLM_SDK_TEST_DEVICE", "cpu")
    args = ["--model", str(default_gguf), "--device", device, "--no-web"]
    args += ["--max-model-len", str(CONTEXT)]
    with live_server(args, log_dir=tmp_path_factory.mktemp("examples-server")) as server:
        yield server


def example_env(server: LiveServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_SDK_")}
    # The examples import `sdk` as an installed package would; PYTHONPATH stands in for that.
    return {**env, "LLM_SDK_BASE_URL": f"{server.base_url}/v1", "PYTHONPATH": str(REPO_ROOT)}


def run_example(server: LiveServer, name: str, *args: str) -> str:
    """Run ``examples/NAME``; return its stdout (fail with its stderr if it fails)."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        env=example_env(server),
        cwd=REPO_ROOT,
        timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stderr}\nserver:\n{server.log()}"
    return result.stdout


def test_every_example_has_a_docstring_that_says_how_to_run_it() -> None:
    names = sorted(path.name for path in EXAMPLES.glob("*.py"))

    assert names == [
        "async_streams.py",
        "fastapi_relay.py",
        "fit_long_conversation.py",
        "quickstart.py",
        "retries_and_timeouts.py",
        "tool_loop.py",
    ]
    for name in names:
        source = (EXAMPLES / name).read_text()
        assert source.startswith('"""'), name
        docstring = source.split('"""')[1]
        assert f"python examples/{name}" in docstring and "LLM_SDK_BASE_URL" in docstring, name


def test_quickstart(server: LiveServer) -> None:
    out = run_example(server, "quickstart.py")

    assert "A: The capital of France is Paris." in out
    assert "finish reason:" in out


def test_async_streams(server: LiveServer) -> None:
    out = run_example(server, "async_streams.py", "4")

    answers = [line for line in out.splitlines() if line.startswith("[")]
    assert sorted(line[:3] for line in answers) == ["[0]", "[1]", "[2]", "[3]"]
    assert all(len(line.split(": ", 1)[1]) > 10 for line in answers)  # real sentences
    assert "4 streams finished" in out.splitlines()[-1]


def test_retries_and_timeouts(server: LiveServer) -> None:
    out = run_example(server, "retries_and_timeouts.py")

    assert "NotFoundError: status=404" in out
    assert "APITimeoutError:" in out
    assert out.count("retrying in") == 3  # every retry of the unreachable server
    assert "APIConnectionError after 3 retries" in out
    assert out.rstrip().endswith("done")


def test_fit_long_conversation(server: LiveServer) -> None:
    out = run_example(server, "fit_long_conversation.py")

    assert f"context window {CONTEXT} tokens; local counts are exact" in out
    assert "without trimming: ContextWindowExceededError" in out
    kept, total = map(int, _between(out, "drop_oldest keeps ", " messages").split(" of "))
    assert 2 < kept < total
    # The server's own count of what was sent equals the local plan: counting is exact.
    assert "local plan" in out and ": the same count" in out


def test_tool_loop(server: LiveServer) -> None:
    out = run_example(server, "tool_loop.py")

    # the model called the Python function with valid arguments, and answered with its result
    assert "[tool] convert_length(10.0, 'miles', 'kilometers') -> 16.09" in out
    answer = _between(out, "A: ", "\n")
    assert "16.09" in answer and "tool_calls" not in answer
    assert "(1 round of tool calls, 4 messages)" in out


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


# -- the FastAPI relay -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def relay(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("relay") / "relay.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "fastapi_relay.py"), str(port)],
            env=example_env(server),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60.0
        while True:
            assert proc.poll() is None, f"the relay exited:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/openapi.json", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the relay never answered:\n{log.read_text()}"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, object]]]:
    """(event name, JSON data) per Server-Sent Event."""
    event, data = "message", ""
    for line in lines:
        if not line:
            if data:
                yield event, json.loads(data)
            event, data = "message", ""
        elif line.startswith("event:"):
            event = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data += line[len("data:") :].strip()


def test_fastapi_relay_streams_sse_events(relay: str) -> None:
    params = {"q": "What is the capital of France?", "max_tokens": "24"}
    with httpx.stream("GET", f"{relay}/relay", params=params, timeout=RUN_TIMEOUT_S) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response.iter_lines()))

    texts = [str(data["text"]) for name, data in events if name == "message"]
    assert len(texts) > 1  # streamed in pieces, not one block
    assert "Paris" in "".join(texts)
    assert events[-1][0] == "done" and events[-1][1]["finish_reason"] in ("stop", "length")


def test_fastapi_relay_client_hanging_up_aborts_the_generation(
    relay: str, server: LiveServer
) -> None:
    before = _aborted(server)
    params = {"q": "Tell me a very long story about a dragon.", "max_tokens": "800"}
    with httpx.stream("GET", f"{relay}/relay", params=params, timeout=RUN_TIMEOUT_S) as response:
        next(sse_events(response.iter_lines()))  # the answer is streaming; now hang up

    deadline = time.monotonic() + 60.0
    while _aborted(server) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _aborted(server) == before + 1


def test_fastapi_relay_rejects_a_missing_question(relay: str) -> None:
    assert httpx.get(f"{relay}/relay", timeout=30.0).status_code == 422


def _aborted(server: LiveServer) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=30.0).text
    return sum(
        value
        for name, labels, value in parse_series(text)
        if name == FINISHED and labels.get("finished_reason") == "abort"
    )
