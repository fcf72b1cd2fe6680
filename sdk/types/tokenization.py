"""``POST /tokenize`` and ``POST /detokenize`` (vLLM's extension, served at the server root)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from pydantic import Field, model_validator

from ._base import APIObject, RequestModel
from .chat_messages import ChatMessage, ChatMessageParam
from .tools import (
    ChatCompletionTool,
    ChatCompletionToolChoice,
    ChatCompletionToolChoiceOptionParam,
    ChatCompletionToolParam,
)

__all__ = [
    "DetokenizeRequest",
    "DetokenizeResponse",
    "TokenizeParams",
    "TokenizeRequest",
    "TokenizeResponse",
]


class TokenizeRequest(RequestModel):
    """Either a ``prompt`` string or chat ``messages`` (rendered with the chat template).

    ``add_special_tokens=None`` leaves the choice to the server (vLLM: true for a prompt,
    false for messages, whose template already writes them).
    """

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(default=None, strict=False)
    add_generation_prompt: bool | None = None
    add_special_tokens: bool | None = None
    # a chat's tools are part of its prompt (vLLM's /tokenize takes them too)
    tools: list[ChatCompletionTool] | None = Field(default=None, strict=False)
    tool_choice: ChatCompletionToolChoice | None = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _prompt_xor_messages(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        return self


class TokenizeParams(TypedDict, total=False):
    """Keyword arguments of ``client.tokenize``."""

    model: str | None
    prompt: str | None
    messages: Sequence[ChatMessageParam | ChatMessage] | None
    add_generation_prompt: bool | None
    add_special_tokens: bool | None
    tools: Sequence[ChatCompletionToolParam] | None
    tool_choice: ChatCompletionToolChoiceOptionParam | None
    parallel_tool_calls: bool | None


class TokenizeResponse(APIObject):
    tokens: list[int]
    count: int
    max_model_len: int | None = None
    token_strs: list[str] | None = None


class DetokenizeRequest(RequestModel):
    model: str | None = None
    tokens: list[int]


class DetokenizeResponse(APIObject):
    prompt: str
