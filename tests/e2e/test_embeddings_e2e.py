"""The real embedding model (all-MiniLM-L6-v2) behind ``python -m server_ref serve``, served
beside the default chat model as ``serve`` does by default: the official ``openai`` client and
our SDK, sync and async; the exported tokenizer's counts; truncation at 256 tokens."""

from __future__ import annotations

import base64
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import openai
import pytest
from kit.live_clients import MODES, OpenAICalls
from kit.live_server import LiveServer, live_server
from tokenizers import Tokenizer

import sdk
from sdk.tokens import HFTokenizer
from sdk.vectors import top_k
from server_ref.loading.registry import DEFAULT_EMBEDDING_MODEL, pull

pytestmark = pytest.mark.e2e

MODEL = DEFAULT_EMBEDDING_MODEL
T = TypeVar("T")
PASSAGES = [
    "A kitten is sleeping on the warm windowsill.",
    "The stock market fell sharply on Monday.",
    "Photosynthesis turns light into chemical energy.",
    "def add(a, b):\n    return a + b",
]
TEXTS = [
    *PASSAGES,
    "Ça va très bien, merci !",
    "こんにちは世界、今日はいい天気ですね。",
    "🇫🇷 flags 🏳️‍🌈 and ✨ sparkles ✨",
    "[CLS] and [SEP] typed as text",
    "  ",
    "Retrieval-augmented generation embeds passages. " * 30,  # over 256 tokens
]


@pytest.fixture(scope="module")
def server(default_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    device = os.environ.get("LLM_SDK_TEST_DEVICE", "cpu")
    args = ["--model", str(default_gguf), "--device", device, "--kv-cache-mib", "64", "--no-web"]
    with live_server(args, log_dir=tmp_path_factory.mktemp("e2e-embeddings")) as live:
        yield live


@pytest.fixture(scope="module")
def library() -> Tokenizer:
    tok = Tokenizer.from_file(str(pull(MODEL) / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


@pytest.fixture(params=MODES)
async def api(request: pytest.FixtureRequest, server: LiveServer) -> AsyncIterator[OpenAICalls]:
    calls = OpenAICalls(request.param, server.base_url, timeout=300)
    yield calls
    await calls.close()


@pytest.fixture(params=MODES)
async def client(request: pytest.FixtureRequest, server: LiveServer) -> AsyncIterator[Any]:
    cls = sdk.Client if request.param == "sync" else sdk.AsyncClient
    c = cls(base_url=f"{server.base_url}/v1", max_retries=0, timeout=300)
    yield c
    await resolve(c.close())


async def resolve(value: Awaitable[T] | T) -> T:
    return await value if inspect.isawaitable(value) else value  # type: ignore[return-value]


def test_both_models_are_listed_with_what_they_do(server: LiveServer) -> None:
    cards = httpx.get(f"{server.base_url}/v1/models").json()["data"]

    assert [c["capabilities"] for c in cards] == [["chat", "completions"], ["embeddings"]]
    assert (cards[1]["id"], cards[1]["max_model_len"], cards[1]["dimensions"]) == (MODEL, 256, 384)


async def test_openai_client_float_and_base64(api: OpenAICalls, library: Tokenizer) -> None:
    default = await api.embed(model=MODEL, input=TEXTS)
    floats = await api.embed(model=MODEL, input=TEXTS, encoding_format="float")
    raw = await api.embed(model=MODEL, input=TEXTS, encoding_format="base64")

    vectors = np.array([d.embedding for d in floats.data], dtype=np.float32)
    assert vectors.shape == (len(TEXTS), 384)
    np.testing.assert_array_equal(np.array([d.embedding for d in default.data]), vectors)
    decoded = np.stack([np.frombuffer(base64.b64decode(d.embedding), "<f4") for d in raw.data])
    np.testing.assert_array_equal(decoded, vectors)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    embedded = sum(min(len(library.encode(t).ids), 256) for t in TEXTS)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == embedded
    with pytest.raises(openai.BadRequestError, match="is an embedding model"):
        await api.create("chat", model=MODEL, messages=[{"role": "user", "content": "hi"}])


async def test_sdk_embeds_and_retrieves(client: Any) -> None:
    corpus = await resolve(client.embeddings.create(model=MODEL, input=PASSAGES))
    floats = await resolve(
        client.embeddings.create(model=MODEL, input=PASSAGES, encoding_format="float")
    )
    query = await resolve(client.embeddings.create(model=MODEL, input="a cat taking a nap"))

    vectors = [d.embedding for d in corpus.data]
    assert vectors == [d.embedding for d in floats.data]  # base64 decoded: the same floats
    best = top_k(query.data[0].embedding, vectors, k=2)
    assert best[0].row == 0 and best[0].score > best[1].score + 0.2


async def test_sdk_counts_with_the_exported_tokenizer(
    client: Any, server: LiveServer, library: Tokenizer
) -> None:
    tok = await resolve(client.tokenizer(MODEL))

    assert isinstance(tok, HFTokenizer) and tok.exact and tok.context_length == 256
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        for text in TEXTS:
            expected = library.encode(text).ids
            assert tok.encode(text) == expected, text
            answer = (await http.post("/tokenize", json={"model": MODEL, "prompt": text})).json()
            assert answer["count"] == tok.count(text) == len(expected), text
    usage = (await resolve(client.embeddings.create(model=MODEL, input=TEXTS[:-1]))).usage
    assert usage.prompt_tokens == sum(tok.count(t) for t in TEXTS[:-1])  # none truncated


async def test_truncation_at_256_tokens(client: Any, library: Tokenizer) -> None:
    long = TEXTS[-1]
    assert len(library.encode(long).ids) > 256

    cut = await resolve(client.embeddings.create(model=MODEL, input=[long]))
    assert cut.usage.prompt_tokens == 256
    with pytest.raises(sdk.BadRequestError) as info:
        await resolve(client.embeddings.create(model=MODEL, input=[long], truncate=False))
    assert info.value.code == "context_length_exceeded"
    assert f"has {len(library.encode(long).ids)} tokens, more than the 256" in str(info.value)
