"""``POST /v1/completions`` (legacy text completions): request and response.

OpenAI streams completions as a sequence of ``Completion`` objects, so there is no chunk type.
"""

from __future__ import annotations

from typing import Required

from pydantic import Field

from ._base import APIObject
from .shared import CompletionUsage, SamplingFields, SamplingParamsDict

__all__ = [
    "Completion",
    "CompletionChoice",
    "CompletionCreateParams",
    "CompletionLogprobs",
    "CompletionRequest",
    "PromptInput",
]

PromptInput = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(SamplingFields):
    """Body of ``POST /v1/completions``: a text prompt, a batch, or token ids."""

    prompt: PromptInput
    echo: bool | None = None
    logprobs: int | None = None  # number of alternatives per position (0 = chosen token only)
    suffix: str | None = None
    best_of: int | None = None


class CompletionCreateParams(SamplingParamsDict, total=False):
    """Keyword arguments of ``client.completions.create`` (``stream`` aside)."""

    prompt: Required[PromptInput]
    echo: bool | None
    logprobs: int | None
    suffix: str | None
    best_of: int | None


class CompletionLogprobs(APIObject):
    tokens: list[str] | None = None
    token_logprobs: list[float | None] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None
    text_offset: list[int] | None = None


class CompletionChoice(APIObject):
    index: int
    text: str
    finish_reason: str | None = None
    logprobs: CompletionLogprobs | None = None


class Completion(APIObject):
    id: str
    object: str = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice] = Field(default_factory=list)
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None
