"""The real default model behind a real ``server_ref serve`` process, through the official
``openai`` client. One server for the whole file: loading the model is the slow part.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from kit.live_clients import greedy_chat_stream
from kit.live_server import LiveServer, live_server
from kit.precision import invariant_int4
from openai.types.chat import ChatCompletionMessageParam

pytestmark = pytest.mark.e2e

QUESTION = "What is the capital of France?"
# Prompts whose greedy continuations have a clear top-1 margin at every step (checked with
# top_logprobs=2): batching changes float rounding, which must not be able to flip a token.
PROMPTS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Write a haiku about the sea.",
    "What is 12 times 12?",
    "Give me a synonym for happy.",
    "Why is the sky blue?",
    "Translate 'good morning' into Spanish.",
    "What do bees make?",
    "List two planets in the solar system.",
    "Who wrote Romeo and Juliet?",
    "What is the boiling point of water?",
    "Describe a cat in one sentence.",
    "What is the opposite of cold?",
    "How do you say 'thank you' in Japanese?",  # kana of several single-byte tokens each
    "Suggest a name for a dog.",
    "Say hello in Chinese.",  # CJK characters of several single-byte tokens each
]


@pytest.fixture(scope="module")
def server(default_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # LLM_SDK_TEST_DEVICE=cuda runs the same checks on the GPU path (as tests/e2e/conftest.py)
    device = os.environ.get("LLM_SDK_TEST_DEVICE", "cpu")
    args = ["--model", str(default_gguf), "--device", device, "--kv-cache-mib", "256", "--no-web"]
    # One intra-op thread: on a shared 2-core machine two spinning OpenMP threads make each
    # step many times slower as soon as anything else runs.
    env = {"OMP_NUM_THREADS": "1"}
    with live_server(args, log_dir=tmp_path_factory.mktemp("e2e-server"), env=env) as live:
        yield live


@pytest.fixture(scope="module")
def invariant_server(
    default_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The default server with one matmul kernel for every step (``--int4 always`` where the
    precision is mixed): under the default ``--int4 auto`` a stream's numbers depend on the
    size of the steps it shares, and a near-tie can flip (the README's trade)."""
    device = os.environ.get("LLM_SDK_TEST_DEVICE", "cpu")
    args = ["--model", str(default_gguf), "--device", device, "--kv-cache-mib", "256"]
    args += ["--no-web", "--int4", invariant_int4(device)]
    env = {"OMP_NUM_THREADS": "1"}
    with live_server(args, log_dir=tmp_path_factory.mktemp("e2e-inv"), env=env) as live:
        yield live


@pytest.fixture(scope="module")
def model_id(server: LiveServer) -> str:
    return str(httpx.get(f"{server.base_url}/v1/models").json()["data"][0]["id"])


@pytest.fixture
async def aclient(server: LiveServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=300
    )
    yield client
    await client.close()


def test_paris(server: LiveServer, model_id: str) -> None:
    with openai.OpenAI(
        base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=300
    ) as client:
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION}]
        whole = client.chat.completions.create(
            model=model_id, messages=messages, max_tokens=32, temperature=0
        )
        answer = whole.choices[0].message.content or ""
        assert "Paris" in answer
        assert whole.choices[0].finish_reason == "stop"

        stream = client.chat.completions.create(
            model=model_id,
            messages=messages,
            max_tokens=32,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == answer
        assert chunks[-1].usage is not None and whole.usage is not None
        assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


async def test_concurrent_streams_equal_solo_runs(
    invariant_server: LiveServer, model_id: str
) -> None:
    """16 greedy streams at once give, token for token, what each gives alone; and streamed
    text never splits a character (two prompts are answered in CJK)."""
    aclient = openai.AsyncOpenAI(
        base_url=f"{invariant_server.base_url}/v1", api_key="unused", max_retries=0, timeout=300
    )
    solo = [await greedy_chat_stream(aclient, model_id, p, 32) for p in PROMPTS]
    together = await asyncio.wait_for(
        asyncio.gather(*(greedy_chat_stream(aclient, model_id, p, 32) for p in PROMPTS)),
        timeout=300,
    )
    for prompt, alone, batched in zip(PROMPTS, solo, together, strict=True):
        assert batched.tokens == alone.tokens, prompt
        assert batched.text == alone.text, prompt
        assert batched.finish_reason == alone.finish_reason, prompt
        assert_no_split_characters(alone.deltas)
        assert_no_split_characters(batched.deltas)
    assert sum(any(ord(ch) > 0x2E80 for ch in run.text) for run in solo) >= 2, "no CJK text"
    await aclient.close()


def assert_no_split_characters(deltas: list[str]) -> None:
    """No delta carries a piece of a multi-byte character (it would read as U+FFFD); only a
    character cut off by max_tokens may end the last one."""
    *middle, last = deltas
    assert not any("\ufffd" in d for d in middle), deltas
    assert "\ufffd" not in last.rstrip("\ufffd"), deltas


async def test_tokenize_detokenize_round_trip(server: LiveServer, model_id: str) -> None:
    text = "Héllo, wörld! 你好 🙂 <|im_start|>user\ntabs\tand  spaces"
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        tokens = (await http.post("/tokenize", json={"prompt": text})).json()["tokens"]
        assert len(tokens) > 5
        back = await http.post("/detokenize", json={"tokens": tokens})
        assert back.json()["prompt"] == text

        # the chat template's count is exactly what a completion is charged for
        messages = [{"role": "user", "content": QUESTION}]
        counted = (await http.post("/tokenize", json={"messages": messages})).json()
        r = await http.post(
            "/v1/chat/completions",
            json={"model": model_id, "messages": messages, "max_tokens": 1},
        )
        assert r.json()["usage"]["prompt_tokens"] == counted["count"]
