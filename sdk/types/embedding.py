"""``POST /v1/embeddings``: request and response.

An embedding arrives as a JSON array of floats (``encoding_format="float"``) or as the
base64 of its little-endian float32 bytes (``"base64"``); ``Embedding.embedding`` is a
``list[float]`` either way: a base64 string is decoded when the response is parsed, so code
that reads embeddings never checks which format the server chose. The SDK asks for base64
unless told otherwise (as openai-python does): about 3.7x fewer bytes on the wire than JSON
floats, and the same float32 values. Unlike openai-python, an explicit
``encoding_format="base64"`` is decoded too: one type for every response, and the floats are
what any use of an embedding needs (the raw bytes are ``array("f", embedding).tobytes()``).

    >>> Embedding.model_validate({"index": 0, "embedding": "AACAPwAAAEA="}).embedding
    [1.0, 2.0]
"""

from __future__ import annotations

import base64
import binascii
import sys
from array import array
from typing import Annotated, Any, Literal, Required, TypedDict

from pydantic import BeforeValidator, WithJsonSchema

from ._base import APIObject, RequestModel
from .completion import PromptInput

__all__ = [
    "CreateEmbeddingResponse",
    "Embedding",
    "EmbeddingCreateParams",
    "EmbeddingRequest",
    "EmbeddingUsage",
    "EncodingFormat",
    "decode_base64_embedding",
]

EncodingFormat = Literal["float", "base64"]


class EmbeddingRequest(RequestModel):
    """Body of ``POST /v1/embeddings``: one text, a batch, or token ids.

    ``truncate`` is an extension (text-embeddings-inference has the same name): ``False``
    asks for an error instead of a cut when an input is longer than the model takes.
    """

    input: PromptInput
    model: str | None = None
    encoding_format: EncodingFormat | None = None
    dimensions: int | None = None
    user: str | None = None
    truncate: bool | None = None


class EmbeddingCreateParams(TypedDict, total=False):
    """Keyword arguments of ``client.embeddings.create``."""

    input: Required[PromptInput]
    model: str | None
    encoding_format: EncodingFormat | None
    dimensions: int | None
    user: str | None
    truncate: bool | None


def decode_base64_embedding(data: str) -> list[float]:
    """The floats of a base64 embedding (little-endian float32, what OpenAI sends).

    >>> decode_base64_embedding("AACAPwAAAEA=")
    [1.0, 2.0]
    """
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"embedding is neither a list of floats nor base64: {exc}") from None
    if len(raw) % 4:
        raise ValueError(f"a base64 embedding must be float32s, got {len(raw)} bytes")
    values = array("f", raw)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def _floats(value: Any) -> Any:
    return decode_base64_embedding(value) if isinstance(value, str) else value


Vector = Annotated[
    list[float],
    BeforeValidator(_floats),
    # the wire carries either form; the JSON schema (the server's OpenAPI document) says so
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": {"type": "number"}},
                {"type": "string", "description": "base64 of little-endian float32 values"},
            ]
        }
    ),
]


class Embedding(APIObject):
    object: str = "embedding"
    index: int
    embedding: Vector  # a base64 string on the wire is decoded to floats when parsed


class EmbeddingUsage(APIObject):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(APIObject):
    object: str = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage | None = None
