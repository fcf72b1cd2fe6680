"""``client.embeddings.create``: the request it sends, and base64 decoded to floats."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import httpx
import pytest
from kit.clients import Api

import sdk
from sdk.types import CreateEmbeddingResponse, Embedding, decode_base64_embedding

VECTORS = [[0.25, -1.5, 2.0**-20], [1.0, 0.0, -0.0]]  # exact in float32


def b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def server(seen: list[dict[str, Any]]) -> Any:
    """Answers in the format asked for (float when none is), like OpenAI."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        as_b64 = body.get("encoding_format") == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": b64(v) if as_b64 else v}
            for i, v in enumerate(VECTORS)
        ]
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": data,
                "model": "e",
                "usage": {"prompt_tokens": 4, "total_tokens": 4},
            },
        )

    return handler


def test_base64_is_asked_for_by_default_and_decoded_to_floats(api: Api) -> None:
    seen: list[dict[str, Any]] = []
    client = api.client(server(seen))

    default = api.run(lambda c: c.embeddings.create(input=["a", "b"], model="e"), client)
    floats = api.run(
        lambda c: c.embeddings.create(input=["a", "b"], model="e", encoding_format="float"),
        client,
    )
    asked = api.run(
        lambda c: c.embeddings.create(input=["a", "b"], model="e", encoding_format="base64"),
        client,
    )

    assert [body["encoding_format"] for body in seen] == ["base64", "float", "base64"]
    for response in (default, floats, asked):
        assert isinstance(response, CreateEmbeddingResponse)
        # the same values, whichever format travelled
        assert [d.embedding for d in response.data] == VECTORS
        assert response.usage is not None and response.usage.total_tokens == 4


def test_the_typed_parameters_travel_as_given(api: Api) -> None:
    seen: list[dict[str, Any]] = []
    client = api.client(server(seen))
    api.run(
        lambda c: c.embeddings.create(
            input=[[101, 7592, 102]], model="e", dimensions=3, truncate=False, user="u"
        ),
        client,
    )
    assert seen == [
        {
            "input": [[101, 7592, 102]],
            "model": "e",
            "dimensions": 3,
            "truncate": False,
            "user": "u",
            "encoding_format": "base64",
        }
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input": "a", "dimensions": "3"},
        {"input": "a", "truncate": "yes"},
        {"input": "a", "encoding_format": "hex"},
        {"input": 7},
        {"input": [1, "a"]},
    ],
)
def test_wrong_types_are_refused_before_sending(api: Api, kwargs: dict[str, Any]) -> None:
    seen: list[dict[str, Any]] = []
    client = api.client(server(seen))
    with pytest.raises(sdk.InvalidRequestParamsError):
        api.run(lambda c: c.embeddings.create(**kwargs), client)
    assert seen == []


def test_what_the_hosted_api_accepts_the_sdk_sends() -> None:
    # the SDK's own model stays permissive: ranges are the server's business
    from sdk._protocol.request import embedding_call

    call, _ = embedding_call({"input": "a", "dimensions": 100_000, "model": "text-embedding-3"})
    assert call.body == {
        "input": "a",
        "dimensions": 100_000,
        "model": "text-embedding-3",
        "encoding_format": "base64",
    }


def test_a_response_that_is_not_base64_is_a_validation_error(api: Api) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        data = [{"index": 0, "embedding": "not base64!"}]
        return httpx.Response(200, json={"object": "list", "data": data, "model": "e"})

    with pytest.raises(sdk.APIResponseValidationError, match="neither a list of floats nor"):
        api.run(lambda c: c.embeddings.create(input="a"), api.client(handler))


@pytest.mark.parametrize(
    ("data", "message"),
    [("AAAA", "float32s, got 3 bytes"), ("!!", "neither a list of floats nor base64")],
)
def test_decoding_checks_the_bytes(data: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_base64_embedding(data)


def test_an_embedding_model_serializes_as_floats_and_publishes_both_forms() -> None:
    embedding = Embedding.model_validate({"index": 0, "embedding": b64([1.0, 2.0])})
    assert embedding.model_dump()["embedding"] == [1.0, 2.0]
    schema = Embedding.model_json_schema()["properties"]["embedding"]
    assert [s["type"] for s in schema["anyOf"]] == ["array", "string"]
