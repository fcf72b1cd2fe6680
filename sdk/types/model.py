"""``GET /v1/models`` and ``GET /v1/models/{model}``."""

from __future__ import annotations

from pydantic import Field

from ._base import APIObject, omitted_if_none

__all__ = ["Model", "ModelFeatures", "ModelList"]


class ModelFeatures(APIObject):
    """What a chat model accepts and can be asked for (an extension; the reference server
    sends it, OpenAI does not). Content parts of other modalities are refused with a 400."""

    input_modalities: list[str] = Field(default_factory=lambda: ["text"])
    output_modalities: list[str] = Field(default_factory=lambda: ["text"])
    tools: bool = False  # tool calls (``tools`` / ``tool_choice``) are served
    # how tools reach the model: "template" (its chat template renders them) or "generic"
    # (``sdk.tokens.tool_format``'s JSON format, for a template without tool support)
    tool_format: str | None = None
    response_formats: list[str] = Field(default_factory=lambda: ["text"])


class Model(APIObject):
    """A model card. ``max_model_len`` (vLLM's extension): the context window in tokens, or
    for an embedding model the longest input it embeds whole.

    Extensions of this project, left out when unknown: ``capabilities`` names the endpoints
    the model serves (``"chat"``, ``"completions"``, ``"embeddings"``; a list of names, as
    Ollama and LM Studio send theirs), so a client can tell a chat model from an embedding
    model; ``features``, what a chat model accepts (modalities, tools, response formats);
    ``dimensions``, the width of an embedding model's vectors.
    """

    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = ""
    max_model_len: int | None = None  # extension (vLLM): context window in tokens
    capabilities: list[str] | None = omitted_if_none()
    features: ModelFeatures | None = omitted_if_none()
    dimensions: int | None = omitted_if_none()


class ModelList(APIObject):
    object: str = "list"
    data: list[Model]
