"""``GET /v1/models`` and ``GET /v1/models/{model}``."""

from __future__ import annotations

from ._base import APIObject

__all__ = ["Model", "ModelList"]


class Model(APIObject):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = ""
    max_model_len: int | None = None  # extension (vLLM): context window in tokens


class ModelList(APIObject):
    object: str = "list"
    data: list[Model]
