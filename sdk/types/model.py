"""``GET /v1/models`` and ``GET /v1/models/{model}``."""

from __future__ import annotations

from ._base import APIObject, omitted_if_none

__all__ = ["Model", "ModelList"]


class Model(APIObject):
    """A model card. ``max_model_len`` (vLLM's extension): the context window in tokens, or
    for an embedding model the longest input it embeds whole.

    Extensions of this project, left out when unknown: ``capabilities`` names the endpoints
    the model serves (``"chat"``, ``"completions"``, ``"embeddings"``), so a client can tell
    a chat model from an embedding model; ``dimensions``, the width of an embedding model's
    vectors.
    """

    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = ""
    max_model_len: int | None = None
    capabilities: list[str] | None = omitted_if_none()
    dimensions: int | None = omitted_if_none()


class ModelList(APIObject):
    object: str = "list"
    data: list[Model]
