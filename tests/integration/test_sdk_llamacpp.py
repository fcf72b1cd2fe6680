"""Our SDK against llama.cpp's OpenAI-compatible server (llama-cpp-python), on the real model.

The SDK promises to work unchanged against servers other than ``server_ref``; this runs it
against ``python -m llama_cpp.server`` serving the default GGUF. It runs when a llama.cpp
server can be started, and is skipped (with the reason) otherwise:

* ``llama_cpp`` (``pip install "llama-cpp-python[server]"``) is importable by the Python
  running the tests, or
* the environment variable ``LLM_SDK_LLAMACPP_PYTHON`` names another interpreter that has
  it (a separate virtual environment, so the test environment need not compile llama.cpp)::

      export LLM_SDK_LLAMACPP_PYTHON=~/venvs/llamacpp/bin/python
      pytest tests/integration/test_sdk_llamacpp.py

A set ``LLM_SDK_LLAMACPP_PYTHON`` that cannot import ``llama_cpp.server`` is an error, not a
skip. Any incompatibility found here is fixed in the SDK, never special-cased in a test.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kit.live_server import LiveServer, free_port, stop
from test_sdk_live import MODES, Client, close_client, make_client, resolve, texts_of

import sdk
from sdk.types import ChatCompletion, Completion

PYTHON_ENV = "LLM_SDK_LLAMACPP_PYTHON"
MODEL = "smollm2-135m-instruct"  # served under this alias, as server_ref names it
START_TIMEOUT_S = 180.0
# llama.cpp's greedy answer to the bare question wanders off ("L'Étoile, ..."); asked for a
# one-word answer, the same model says "The capital of France is Paris."
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant. Answer in one word."},
    {"role": "user", "content": "What is the capital of France?"},
]
GREEDY = {"temperature": 0, "max_tokens": 16}


def llamacpp_python() -> str:
    """The interpreter that runs the llama.cpp server, or skip the module."""
    configured = os.environ.get(PYTHON_ENV)
    python = configured or sys.executable
    if not configured and importlib.util.find_spec("llama_cpp") is None:
        pytest.skip(
            "no llama.cpp server: llama_cpp is not importable here and "
            f"{PYTHON_ENV} is not set (see this module's docstring)"
        )
    try:
        check = subprocess.run(
            [python, "-c", "import llama_cpp.server.app"], capture_output=True, text=True
        )
        failure = check.stderr.strip()[-500:] if check.returncode else ""
    except OSError as exc:  # no such interpreter
        failure = str(exc)
    if failure:
        reason = f"{python} cannot import llama_cpp.server: {failure}"
        if configured:
            pytest.fail(f"{PYTHON_ENV} is set, but {reason}")
        pytest.skip(reason)
    return python


def wait_ready(server: LiveServer, timeout: float) -> None:
    """Poll ``GET /v1/models`` (llama-cpp-python has no /health) until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"llama.cpp server exited early; its output:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/v1/models", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(server)
    pytest.fail(f"llama.cpp server not ready after {timeout:.0f} s; its output:\n{server.log()}")


@pytest.fixture(scope="module")
def llamacpp(default_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (without ``/v1``) of a llama.cpp server on the default model."""
    python = llamacpp_python()
    port = free_port()
    log_path = tmp_path_factory.mktemp("llamacpp") / "server.log"
    cmd = [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        str(default_gguf),
        "--model_alias",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        "2",
        "--interrupt_requests",
        "False",
    ]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    server = LiveServer(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        wait_ready(server, START_TIMEOUT_S)
        yield server.base_url
    finally:
        stop(server)


@pytest.fixture(params=MODES)
async def client(request: pytest.FixtureRequest, llamacpp: str) -> Any:
    client = make_client(str(request.param), llamacpp, timeout=300.0)
    yield client
    await close_client(client)


async def test_models_list(client: Client) -> None:
    models = await resolve(client.models.list())
    assert [m.id for m in models.data] == [MODEL]


async def test_chat(client: Client) -> None:
    reply = await resolve(client.chat.completions.create(model=MODEL, messages=QUESTION, **GREEDY))
    assert isinstance(reply, ChatCompletion)
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.response_info is not None and reply.response_info.status_code == 200


async def test_chat_stream(client: Client) -> None:
    stream = await resolve(
        client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True, **GREEDY)
    )
    texts = await texts_of(stream)
    final = await resolve(stream.get_final_completion())
    assert "Paris" in "".join(texts)
    assert final.choices[0].message.content == "".join(texts)
    assert final.choices[0].message.role == "assistant"
    assert final.choices[0].finish_reason in ("stop", "length")


async def test_completion(client: Client) -> None:
    args: dict[str, Any] = {"model": MODEL, "prompt": "The capital of France is", **GREEDY}
    whole = await resolve(client.completions.create(**args))
    assert isinstance(whole, Completion)
    assert whole.choices[0].text
    assert whole.usage is not None and whole.usage.completion_tokens > 0

    stream = await resolve(client.completions.create(stream=True, **args))
    final = await resolve(stream.get_final_completion())
    assert final.choices[0].text == whole.choices[0].text
    assert final.choices[0].finish_reason == whole.choices[0].finish_reason


async def test_context_overflow_is_typed(client: Client) -> None:
    messages = [{"role": "user", "content": "tick tock " * 1500}]  # beyond n_ctx (2048)
    with pytest.raises(sdk.BadRequestError) as info:
        await resolve(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4))
    assert info.value.status_code == 400
    assert info.value.code == "context_length_exceeded"
    assert info.value.request_id


async def test_context_overflow_in_a_stream_is_an_error(client: Client) -> None:
    # llama-cpp-python (0.3) checks the context only once the stream has begun: it answers
    # 200 and then drops the stream without an event. The SDK must raise, not hand back an
    # empty stream as if the model had said nothing (a fixed server would answer 400).
    messages = [{"role": "user", "content": "tick tock " * 1500}]
    with pytest.raises((sdk.BadRequestError, sdk.APIConnectionError)):
        stream = await resolve(
            client.chat.completions.create(
                model=MODEL, messages=messages, max_tokens=4, stream=True
            )
        )
        await texts_of(stream)
