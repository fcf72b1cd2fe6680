"""``POST /v1/chat/completions``: request, response, stream chunk, logprobs.

Shapes follow OpenAI's Chat Completions API field for field, so the official ``openai``
client parses a server built on these models, and this SDK parses OpenAI-compatible servers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Required, TypedDict

from pydantic import Field

from ._base import APIObject, RequestModel
from .shared import CompletionUsage, SamplingFields, SamplingParamsDict

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionCreateParams",
    "ChatCompletionMessage",
    "ChatCompletionRequest",
    "ChatCompletionTokenLogprob",
    "ChatMessage",
    "ChatMessageParam",
    "ChatRole",
    "Choice",
    "ChoiceDelta",
    "ChoiceLogprobs",
    "ChunkChoice",
    "TextContentPart",
    "TextContentPartParam",
    "TopLogprob",
]

ChatRole = Literal["system", "user", "assistant", "tool", "developer"]


# --- request ---------------------------------------------------------------------------


class TextContentPart(RequestModel):
    type: Literal["text"] = "text"
    text: str


class ChatMessage(RequestModel):
    """One message of a conversation: ``{"role": "user", "content": "Hi"}``."""

    role: ChatRole
    content: str | list[TextContentPart] | None = None
    name: str | None = None


class ChatCompletionRequest(SamplingFields):
    """Body of ``POST /v1/chat/completions``.

    >>> ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "Hi"}])
    ... # doctest: +SKIP
    """

    # Lax container so tuples and ``ChatMessage`` objects are accepted; items stay strict.
    messages: list[ChatMessage] = Field(strict=False)
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class TextContentPartParam(TypedDict):
    type: Literal["text"]
    text: str


class ChatMessageParam(TypedDict, total=False):
    role: Required[ChatRole]
    content: str | list[TextContentPartParam] | None
    name: str | None


class ChatCompletionCreateParams(SamplingParamsDict, total=False):
    """Keyword arguments of ``client.chat.completions.create`` (``stream`` aside)."""

    messages: Required[Sequence[ChatMessageParam | ChatMessage]]
    max_completion_tokens: int | None
    logprobs: bool | None
    top_logprobs: int | None


# --- logprobs ----------------------------------------------------------------------------


class TopLogprob(APIObject):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatCompletionTokenLogprob(APIObject):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(APIObject):
    content: list[ChatCompletionTokenLogprob] | None = None
    refusal: list[ChatCompletionTokenLogprob] | None = None


# --- response ----------------------------------------------------------------------------


class ChatCompletionMessage(APIObject):
    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None


class Choice(APIObject):
    index: int
    message: ChatCompletionMessage
    # "stop" | "length" | ...; a plain str so servers with extra reasons still parse.
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(APIObject):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


# --- stream chunk ------------------------------------------------------------------------


class ChoiceDelta(APIObject):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None


class ChunkChoice(APIObject):
    index: int
    delta: ChoiceDelta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(APIObject):
    """One ``data:`` event of a chat stream.

    The first chunk of each choice carries ``delta.role``; with
    ``stream_options={"include_usage": True}`` a last chunk has ``choices == []`` and ``usage``.
    """

    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None
