"""Pieces shared by several endpoints: usage counts, stream options, sampling fields."""

from __future__ import annotations

from typing import TypedDict

from ._base import APIObject, RequestModel, omitted_if_none

__all__ = [
    "CompletionTokensDetails",
    "CompletionUsage",
    "PromptTokensDetails",
    "SamplingFields",
    "SamplingParamsDict",
    "StreamOptions",
    "StreamOptionsParam",
]


class PromptTokensDetails(APIObject):
    cached_tokens: int | None = None  # prompt tokens served from a prefix cache
    audio_tokens: int | None = None


class CompletionTokensDetails(APIObject):
    reasoning_tokens: int | None = None  # hidden reasoning, counted in completion_tokens
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None  # Predicted Outputs
    rejected_prediction_tokens: int | None = None


class CompletionUsage(APIObject):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = omitted_if_none()
    completion_tokens_details: CompletionTokensDetails | None = omitted_if_none()


class StreamOptions(RequestModel):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class StreamOptionsParam(TypedDict, total=False):
    include_usage: bool
    include_obfuscation: bool


class SamplingFields(RequestModel):
    """Sampling and output controls common to ``/chat/completions`` and ``/completions``.

    ``None`` everywhere means "not set, use the server's default"; the SDK only sends the
    fields a caller set.
    """

    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # extension (vLLM, llama.cpp)
    min_p: float | None = None  # extension (vLLM, llama.cpp)
    seed: int | None = None
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = None
    stop_token_ids: list[int] | None = None  # extension (vLLM)
    ignore_eos: bool | None = None  # extension (vLLM)


class SamplingParamsDict(TypedDict, total=False):
    """Keyword form of ``SamplingFields`` (without ``stream``, which is its own argument)."""

    model: str | None
    temperature: float | None
    top_p: float | None
    top_k: int | None
    min_p: float | None
    seed: int | None
    max_tokens: int | None
    stop: str | list[str] | None
    n: int | None
    presence_penalty: float | None
    frequency_penalty: float | None
    logit_bias: dict[str, float] | None
    stream_options: StreamOptionsParam | None
    user: str | None
    stop_token_ids: list[int] | None
    ignore_eos: bool | None
