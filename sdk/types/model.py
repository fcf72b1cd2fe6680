"""``GET /v1/models`` and ``GET /v1/models/{model}``."""

from __future__ import annotations

from pydantic import Field

from ._base import APIObject, omitted_if_none

__all__ = ["Model", "ModelCapabilities", "ModelList"]


class ModelCapabilities(APIObject):
    """What a model accepts and can be asked for (an extension; the reference server sends
    it, OpenAI does not). Content parts of other modalities are refused with a 400."""

    input_modalities: list[str] = Field(default_factory=lambda: ["text"])
    output_modalities: list[str] = Field(default_factory=lambda: ["text"])
    tools: bool = False  # tool calls (``tools`` / ``tool_choice``) are served
    # how tools reach the model: "template" (its chat template renders them) or "generic"
    # (``sdk.tokens.tool_format``'s JSON format, for a template without tool support)
    tool_format: str | None = None
    response_formats: list[str] = Field(default_factory=lambda: ["text"])


class Model(APIObject):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = ""
    max_model_len: int | None = None  # extension (vLLM): context window in tokens
    capabilities: ModelCapabilities | None = omitted_if_none()  # extension (llm-sdk)


class ModelList(APIObject):
    object: str = "list"
    data: list[Model]
