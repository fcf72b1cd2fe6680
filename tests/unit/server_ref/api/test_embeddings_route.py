"""``POST /v1/embeddings`` and the embedding model on the shared routes (models, tokenize,
tokenizer export, health), in-process: the fake chat engine and the tiny random BERT."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from kit.fake_engine import FakeEngine
from starlette.responses import JSONResponse
from tokenizers import Tokenizer

from server_ref.api import create_app
from server_ref.api.routes_embeddings import ROWS_PER_CHUNK, body_chunks
from server_ref.engine.build_embedder import build_embedder
from server_ref.engine.embedder import Embedder
from server_ref.engine.embedding_types import (
    EmbedderLimits,
    EmbedderOverloadedError,
    EmbeddingResult,
)

EMBEDDING = "tiny-bert"
CHAT = "fake-model"


@pytest.fixture
def embedder(tiny_bert: Path) -> Iterator[Embedder]:
    limits = EmbedderLimits(max_inputs=64, max_batch_tokens=64, max_queued_inputs=128)
    e = build_embedder(tiny_bert, model_id=EMBEDDING, device="cpu", limits=limits)
    e.start()
    yield e
    e.shutdown()


@pytest.fixture
def app(engine: FakeEngine, embedder: Embedder) -> FastAPI:
    return create_app(engine, embedder=embedder, enable_web=False)


async def embed(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/embeddings", json=body)


def error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


async def test_float_and_base64_carry_the_same_unit_vectors(
    client: httpx.AsyncClient, embedder: Embedder
) -> None:
    texts = ["hello world", "the cat sat on the mat"]
    floats = (await embed(client, input=texts, model=EMBEDDING)).json()
    b64 = (await embed(client, input=texts, encoding_format="base64")).json()

    assert floats["object"] == "list" and floats["model"] == EMBEDDING
    assert [d["index"] for d in floats["data"]] == [0, 1]
    vectors = np.array([d["embedding"] for d in floats["data"]], dtype=np.float32)
    decoded = np.stack(
        [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in b64["data"]]
    )
    assert vectors.shape == (2, embedder.info.dimensions)
    np.testing.assert_array_equal(vectors, decoded)  # the same float32 values, both ways
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    counts = [len(embedder.tokenizer.encode(t)) for t in texts]  # [CLS] and [SEP] count
    assert floats["usage"] == {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}


@pytest.mark.parametrize(
    "value",
    ["hello world", ["hello world"], [2, 14, 15, 3], [[2, 14, 15, 3]]],
    ids=["string", "strings", "ids", "id-lists"],
)
async def test_the_four_input_forms(client: httpx.AsyncClient, value: Any) -> None:
    # [CLS] hello world [SEP] as ids is the same input as the text
    text = (await embed(client, input="hello world")).json()["data"][0]["embedding"]
    data = (await embed(client, input=value)).json()["data"]
    assert len(data) == 1
    np.testing.assert_allclose(data[0]["embedding"], text, atol=1e-6)


async def test_truncation_is_the_default_and_counted_and_can_be_refused(
    client: httpx.AsyncClient, embedder: Embedder
) -> None:
    long = "hello world " * 40  # the tiny model takes 16 tokens
    cut = await embed(client, input=[long])
    assert cut.status_code == 200 and cut.json()["usage"]["prompt_tokens"] == 16

    refused = await embed(client, input=["hi", long], truncate=False)
    assert refused.status_code == 400
    assert error(refused)["code"] == "context_length_exceeded"
    assert error(refused)["param"] == "input"
    assert "input[1] has 82 tokens, more than the 16" in error(refused)["message"]


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"input": ""}, "input", "input[0] is an empty string"),
        ({"input": []}, "input", "must not be an empty list"),
        ({"input": [[]]}, "input", "input[0] is an empty list of token ids"),
        ({"input": ["a"] * 10_000}, "input", "input has 10000 items; at most 64 per request"),
        ({"input": 3}, "input", "must be a string, a list of strings"),
        ({"input": [1, "a"]}, "input", "must be a string, a list of strings"),
        ({"input": [1.5]}, "input", "must be a string, a list of strings"),
        ({"input": [True]}, "input", "must be a string, a list of strings"),
        ({"input": None}, "input", "must be a string, a list of strings"),
        ({}, "input", "input: Field required"),
        ({"input": [-1]}, "input", "token id -1, outside"),
        ({"input": [[5, 10**9]]}, "input", "token id 1000000000, outside"),
        ({"input": "a", "dimensions": 0}, "dimensions", "greater than or equal to 1"),
        ({"input": "a", "dimensions": "8"}, "dimensions", "valid integer"),
        ({"input": "a", "dimensions": 8}, "dimensions", "gives 32 dimensions only"),
        ({"input": "a", "dimensions": 33}, "dimensions", "between 1 and 32"),
        ({"input": "a", "encoding_format": "hex"}, "encoding_format", "'float' or 'base64'"),
        ({"input": "a", "truncate": "no"}, "truncate", "valid boolean"),
        ({"input": "a", "user": 7}, "user", "valid string"),
        ({"input": "a", "normalize": False}, None, "unknown field 'normalize'"),
    ],
)
async def test_bad_input_is_a_400_that_names_it(
    client: httpx.AsyncClient, body: dict[str, Any], param: str | None, message: str
) -> None:
    response = await client.post("/v1/embeddings", json=body)

    assert response.status_code == 400, response.text
    assert error(response)["type"] == "invalid_request_error"
    assert error(response)["param"] == param
    assert message in error(response)["message"]
    # the server stays healthy and serves the next request
    assert (await client.get("/health")).status_code == 200
    assert (await embed(client, input="hello")).status_code == 200


async def test_the_full_dimensions_and_user_are_accepted(client: httpx.AsyncClient) -> None:
    response = await embed(client, input="hello", dimensions=32, user="u-1", truncate=True)
    assert response.status_code == 200
    assert len(response.json()["data"][0]["embedding"]) == 32


async def test_each_model_only_on_its_own_endpoints(client: httpx.AsyncClient) -> None:
    chat_on_embeddings = await embed(client, input="hi", model=CHAT)
    assert chat_on_embeddings.status_code == 400
    assert error(chat_on_embeddings)["code"] == "operation_not_supported"
    assert error(chat_on_embeddings)["message"] == (
        f"'{CHAT}' is a chat model: it serves /v1/chat/completions and /v1/completions. "
        f"Embeddings on this server come from '{EMBEDDING}'."
    )
    messages = [{"role": "user", "content": "hi"}]
    for path, body in (
        ("/v1/chat/completions", {"messages": messages}),
        ("/v1/completions", {"prompt": "hi"}),
    ):
        response = await client.post(path, json={"model": EMBEDDING, **body})
        assert response.status_code == 400, path
        assert error(response)["message"] == (
            f"'{EMBEDDING}' is an embedding model: it serves /v1/embeddings only. Chat and "
            f"completions on this server come from '{CHAT}'."
        )
    unknown = await embed(client, input="hi", model="nope")
    assert unknown.status_code == 404 and error(unknown)["code"] == "model_not_found"
    assert f"Embeddings on this server come from '{EMBEDDING}'" in error(unknown)["message"]
    unknown_chat = await client.post("/v1/completions", json={"model": "nope", "prompt": "a"})
    assert f"serves '{CHAT}' and '{EMBEDDING}'" in error(unknown_chat)["message"]


async def test_without_an_embedding_model_the_endpoint_says_so(engine: FakeEngine) -> None:
    app = create_app(engine, enable_web=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        for model in (None, CHAT):
            body = {"input": "hi"} if model is None else {"input": "hi", "model": model}
            response = await client.post("/v1/embeddings", json=body)
            assert response.status_code == (404 if model is None else 400)
            assert (
                "no embedding model (it was started with --embedding-model none)"
                in (error(response)["message"])
            )
        assert [m["id"] for m in (await client.get("/v1/models")).json()["data"]] == [CHAT]


async def test_models_lists_both_and_says_what_each_does(
    client: httpx.AsyncClient, embedder: Embedder
) -> None:
    listed = (await client.get("/v1/models")).json()["data"]

    assert [m["id"] for m in listed] == [CHAT, EMBEDDING]
    assert listed[0]["capabilities"] == ["chat", "completions"]
    assert "dimensions" not in listed[0]
    card = listed[1]
    assert card["capabilities"] == ["embeddings"]
    assert (card["max_model_len"], card["dimensions"]) == (16, 32)
    assert card["created"] == embedder.info.created > 0
    assert (await client.get(f"/v1/models/{EMBEDDING}")).json() == card
    assert (await client.get(f"/v1/models/{CHAT}")).json() == listed[0]


async def test_tokenize_and_detokenize_with_the_wordpiece_tokenizer(
    client: httpx.AsyncClient, tiny_bert: Path
) -> None:
    library = Tokenizer.from_file(str(tiny_bert / "tokenizer.json"))
    library.no_padding()
    library.no_truncation()
    text = "Hello world, the quick brown fox! " * 3  # longer than the 16-token limit
    expected = library.encode(text).ids

    answer = (await client.post("/tokenize", json={"model": EMBEDDING, "prompt": text})).json()
    assert answer == {"tokens": expected, "count": len(expected), "max_model_len": 16}
    bare = await client.post(
        "/tokenize", json={"model": EMBEDDING, "prompt": text, "add_special_tokens": False}
    )
    assert bare.json()["tokens"] == library.encode(text, add_special_tokens=False).ids
    chat = await client.post(
        "/tokenize", json={"model": EMBEDDING, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert chat.status_code == 400 and "no chat template" in error(chat)["message"]

    back = await client.post("/detokenize", json={"model": EMBEDDING, "tokens": expected[:4]})
    assert back.json() == {"prompt": library.decode(expected[:4])}
    bad = await client.post("/detokenize", json={"model": EMBEDDING, "tokens": [10**6]})
    assert bad.status_code == 400 and error(bad)["param"] == "tokens"


async def test_tokenizer_export_carries_the_tokenizer_json(
    client: httpx.AsyncClient, tiny_bert: Path
) -> None:
    file = (tiny_bert / "tokenizer.json").read_bytes()
    sha = hashlib.sha256(file).hexdigest()

    export = (await client.get(f"/v1/models/{EMBEDDING}/tokenizer")).json()
    assert export["format"] == "hf-tokenizers" and export["model"] == EMBEDDING
    assert (export["ranks_sha256"], export["ranks_url"], export["ranks"]) == (
        sha,
        "tokenizer/ranks",
        None,
    )
    assert export["context_length"] == 16 and export["special_tokens"]["[CLS]"] == 2
    inline = (await client.get(f"/v1/models/{EMBEDDING}/tokenizer?ranks=inline")).json()
    assert inline["ranks"].encode() == file

    linked = await client.get(f"/v1/models/{EMBEDDING}/tokenizer/ranks")
    assert linked.content == file and linked.headers["content-type"] == "application/json"
    assert linked.headers["etag"] == f'"{sha}"'
    cached = await client.get(
        f"/v1/models/{EMBEDDING}/tokenizer/ranks", headers={"If-None-Match": f'"{sha}"'}
    )
    assert cached.status_code == 304
    # the chat model's export is untouched: the fake engine's byte tokenizer exports nothing
    assert (await client.get(f"/v1/models/{CHAT}/tokenizer")).status_code == 404


async def test_overloaded_is_a_429_and_closed_a_503(
    client: httpx.AsyncClient, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any, **kwargs: Any) -> Any:
        raise EmbedderOverloadedError("the embedding queue is full", retry_after=2.5)

    with monkeypatch.context() as patch:
        patch.setattr(embedder, "submit", full)
        response = await embed(client, input="hi")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert error(response)["code"] == "rate_limit_exceeded"

    embedder.shutdown()
    response = await embed(client, input="hi")
    assert response.status_code == 503 and "not running" in error(response)["message"]
    assert (await client.get("/health")).status_code == 503  # ready only with both models


async def test_health_waits_for_the_embedding_model(engine: FakeEngine, tiny_bert: Path) -> None:
    embedder = build_embedder(tiny_bert, model_id=EMBEDDING, device="cpu")  # not started
    app = create_app(engine, embedder=embedder, enable_web=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        assert (await client.get("/health")).status_code == 503
        embedder.start()
        assert (await client.get("/health")).status_code == 200
    embedder.shutdown()


def test_a_chat_and_an_embedding_model_of_one_name_are_refused(
    engine: FakeEngine, tiny_bert: Path
) -> None:
    embedder = build_embedder(tiny_bert, model_id=CHAT, device="cpu")
    with pytest.raises(ValueError, match="both named 'fake-model'"):
        create_app(engine, embedder=embedder)


async def test_the_openapi_document_describes_the_request(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/v1/embeddings"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["properties"]) == {
        "input",
        "model",
        "encoding_format",
        "dimensions",
        "user",
        "truncate",
    }


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
@pytest.mark.parametrize("rows", [1, 16, 17, 40])
def test_the_body_in_chunks_is_the_json_body(encoding_format: str, rows: int) -> None:
    rng = np.random.default_rng(rows)
    result = EmbeddingResult(
        rng.standard_normal((rows, 8)).astype(np.float32), (3,) * rows, (False,) * rows
    )
    vectors = result.as_base64() if encoding_format == "base64" else result.as_floats()
    whole = JSONResponse(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "model": "m",
            "usage": {"prompt_tokens": 3 * rows, "total_tokens": 3 * rows},
        }
    ).body

    chunks = list(body_chunks(result, encoding_format, "m"))

    assert b"".join(chunks) == whole
    assert len(chunks) == rows // ROWS_PER_CHUNK + 1


async def test_a_large_response_is_streamed_in_chunks(client: httpx.AsyncClient) -> None:
    small = await embed(client, input=["hello"] * ROWS_PER_CHUNK)
    large = await embed(client, input=["hello"] * (3 * ROWS_PER_CHUNK + 1))

    assert small.headers["content-length"] == str(len(small.content))
    assert "content-length" not in large.headers
    assert [d["index"] for d in large.json()["data"]] == list(range(3 * ROWS_PER_CHUNK + 1))
    assert large.json()["data"][0] == small.json()["data"][0]


async def test_the_openapi_document_names_the_embedding_model_where_it_is_served(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas, paths = document["components"]["schemas"], document["paths"]
    (card_id,) = paths["/v1/models/{model_id}"]["get"]["parameters"]
    assert card_id["schema"]["enum"] == [CHAT, EMBEDDING]
    for name in ("ServerTokenizeRequest", "ServerDetokenizeRequest"):
        assert schemas[name]["properties"]["model"]["anyOf"][0]["enum"] == [CHAT, EMBEDDING]
    # the chat routes answer 400 to the embedding model: it is not one of their names
    assert schemas["ServerChatCompletionRequest"]["properties"]["model"]["anyOf"][0]["enum"] == [
        CHAT
    ]
    for model in (CHAT, EMBEDDING):
        assert (await client.get(f"/v1/models/{model}")).status_code == 200
        tokenized = await client.post("/tokenize", json={"model": model, "prompt": "hi"})
        assert tokenized.status_code == 200
