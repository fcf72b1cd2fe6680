"""``POST /v1/embeddings``: request and response."""

from __future__ import annotations

from typing import Literal, Required, TypedDict

from ._base import APIObject, RequestModel
from .completion import PromptInput

__all__ = [
    "CreateEmbeddingResponse",
    "Embedding",
    "EmbeddingCreateParams",
    "EmbeddingRequest",
    "EmbeddingUsage",
]


class EmbeddingRequest(RequestModel):
    """Body of ``POST /v1/embeddings``: one text, a batch, or token ids."""

    input: PromptInput
    model: str | None = None
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = None
    user: str | None = None


class EmbeddingCreateParams(TypedDict, total=False):
    """Keyword arguments of ``client.embeddings.create``."""

    input: Required[PromptInput]
    model: str | None
    encoding_format: Literal["float", "base64"] | None
    dimensions: int | None
    user: str | None


class Embedding(APIObject):
    object: str = "embedding"
    index: int
    embedding: list[float] | str  # str when encoding_format="base64"


class EmbeddingUsage(APIObject):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(APIObject):
    object: str = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage | None = None
