"""``/v1/embeddings`` on a live server (the tiny GGUF for chat, the tiny BERT for embeddings):
the official ``openai`` client and our SDK, sync and async; bad input; both models at once."""

from __future__ import annotations

import asyncio
import base64
import inspect
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import httpx
import numpy as np
import openai
import pytest
from kit.live_clients import OpenAICalls
from kit.tinybert import NAME as EMBEDDING

import sdk
from sdk.tokens import HFTokenizer

T = TypeVar("T")
TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog", "日本語 code: def f():"]
LONG = "the cat sat on the mat " * 10  # the tiny BERT takes 16 tokens


async def resolve(value: Awaitable[T] | T) -> T:
    return await value if inspect.isawaitable(value) else value  # type: ignore[return-value]


@pytest.fixture
async def client(mode: str, base_url: str) -> AsyncIterator[Any]:
    """Our SDK's ``Client`` or ``AsyncClient`` (a sync call just blocks the test's loop)."""
    cls = sdk.Client if mode == "sync" else sdk.AsyncClient
    c = cls(base_url=f"{base_url}/v1", max_retries=0, timeout=60.0)
    yield c
    await resolve(c.close())


async def counts(http: httpx.AsyncClient, texts: list[str]) -> list[int]:
    """What the server's /tokenize says each text is, [CLS] and [SEP] included."""
    answers = [
        (await http.post("/tokenize", json={"model": EMBEDDING, "prompt": t})).json() for t in texts
    ]
    return [a["count"] for a in answers]


async def test_openai_client_float_and_base64(api: OpenAICalls, http: httpx.AsyncClient) -> None:
    default = await api.embed(model=EMBEDDING, input=TEXTS)  # asks for base64, decodes it
    floats = await api.embed(model=EMBEDDING, input=TEXTS, encoding_format="float")
    raw = await api.embed(model=EMBEDDING, input=TEXTS, encoding_format="base64")

    vectors = np.array([d.embedding for d in floats.data], dtype=np.float32)
    assert vectors.shape == (3, 32) and [d.index for d in floats.data] == [0, 1, 2]
    np.testing.assert_array_equal(np.array([d.embedding for d in default.data]), vectors)
    decoded = [np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in raw.data]
    np.testing.assert_array_equal(np.stack(decoded), vectors)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert floats.model == EMBEDDING
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == sum(await counts(http, TEXTS))


async def test_openai_client_token_ids_and_wrong_models(api: OpenAICalls, model_id: str) -> None:
    text = await api.embed(model=EMBEDDING, input="hello world")
    ids = await api.embed(model=EMBEDDING, input=[[2, 14, 15, 3]])  # [CLS] hello world [SEP]
    np.testing.assert_allclose(ids.data[0].embedding, text.data[0].embedding, atol=1e-6)

    with pytest.raises(openai.BadRequestError, match="is a chat model"):
        await api.embed(model=model_id, input="hi")
    with pytest.raises(openai.BadRequestError, match="is an embedding model"):
        await api.create("chat", model=EMBEDDING, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="more than the 16"):
        await api.embed(model=EMBEDDING, input=LONG, extra_body={"truncate": False})


async def test_sdk_float_and_base64_are_the_same_floats(
    client: Any, http: httpx.AsyncClient
) -> None:
    default = await resolve(client.embeddings.create(model=EMBEDDING, input=TEXTS))
    floats = await resolve(
        client.embeddings.create(model=EMBEDDING, input=TEXTS, encoding_format="float")
    )
    full = await resolve(client.embeddings.create(model=EMBEDDING, input=TEXTS, dimensions=32))

    assert isinstance(default, sdk.types.CreateEmbeddingResponse)
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    assert [d.embedding for d in full.data] == [d.embedding for d in floats.data]
    assert all(isinstance(x, float) for x in default.data[0].embedding)
    assert default.usage is not None
    assert default.usage.prompt_tokens == sum(await counts(http, TEXTS))


async def test_sdk_truncation_default_and_refusal(client: Any) -> None:
    cut = await resolve(client.embeddings.create(model=EMBEDDING, input=[LONG]))
    assert cut.usage is not None and cut.usage.prompt_tokens == 16

    with pytest.raises(sdk.BadRequestError) as info:
        await resolve(client.embeddings.create(model=EMBEDDING, input=[LONG], truncate=False))
    assert info.value.status_code == 400 and info.value.code == "context_length_exceeded"
    with pytest.raises(sdk.BadRequestError, match="gives 32 dimensions only"):
        await resolve(client.embeddings.create(model=EMBEDDING, input="a", dimensions=8))


async def test_sdk_counts_with_the_exported_tokenizer(client: Any, http: httpx.AsyncClient) -> None:
    tok = await resolve(client.tokenizer(EMBEDDING))

    assert isinstance(tok, HFTokenizer) and tok.exact and tok.context_length == 16
    texts = [*TEXTS, LONG, "ünïcödé ✨ [SEP] inside"]
    assert [tok.count(t) for t in texts] == await counts(http, texts)
    counted = await resolve(client.count_tokens(EMBEDDING, prompt=LONG))
    assert (counted.tokens, counted.exact, counted.context_length) == (tok.count(LONG), True, 16)
    with pytest.raises(sdk.tokens.TokenizerError, match="no chat template"):
        tok.count_chat([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(
    "body",
    [
        {"input": ""},
        {"input": []},
        {"input": ["a"] * 10_000},
        {"input": 42},
        {"input": [1, "a"]},
        {"input": "a", "dimensions": 0},
        {"input": "a", "dimensions": 10**6},
        {"input": [[3, 10**9]]},
    ],
    ids=["empty-string", "empty-list", "10k", "int", "mixed", "dims-0", "dims-huge", "bad-id"],
)
async def test_bad_input_is_a_400_and_the_server_stays_healthy(
    http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await http.post("/v1/embeddings", json={"model": EMBEDDING, **body})

    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert (await http.get("/health")).status_code == 200
    assert (await http.post("/v1/embeddings", json={"input": "still fine"})).status_code == 200


async def test_concurrent_requests_and_a_chat_stream_all_finish_unchanged(
    base_url: str, model_id: str
) -> None:
    async with sdk.AsyncClient(base_url=f"{base_url}/v1", max_retries=0, timeout=60.0) as client:
        alone = [
            (await client.embeddings.create(model=EMBEDDING, input=[t])).data[0].embedding
            for t in TEXTS
        ]
        chat = {
            "model": model_id,
            "messages": [{"role": "user", "content": "Tell me a story."}],
            "max_tokens": 24,
            "temperature": 0,
        }
        solo = (await client.chat.completions.create(**chat)).choices[0].message.content

        async def embed(text: str) -> list[float]:
            response = await client.embeddings.create(model=EMBEDDING, input=[text])
            return response.data[0].embedding

        together, reply = await asyncio.gather(
            asyncio.gather(*(embed(t) for t in TEXTS * 4)),
            client.chat.completions.create(**chat),
        )
    for i, vector in enumerate(together):
        np.testing.assert_allclose(vector, alone[i % len(TEXTS)], atol=1e-6)
    assert reply.choices[0].message.content == solo  # greedy: the same tokens, not disturbed
