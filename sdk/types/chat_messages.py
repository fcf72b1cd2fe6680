"""Chat messages and their content parts, as a client sends them.

One request model, ``ChatMessage``, carries every role's fields (an assistant's
``tool_calls``, a tool result's ``tool_call_id``, ...): the service decides what a role may
hold, and a single model keeps error locations simple (``messages[0].role``). The
``*MessageParam`` TypedDicts are the precise, per-role shapes for type checkers, as in
OpenAI's API reference.

Content parts are told apart by ``type``. Known kinds are checked (an ``image_url`` part
needs a ``url``); kinds this SDK does not know yet are sent as given.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Required, TypeAlias, TypedDict

from pydantic import Discriminator, Tag, model_validator

from ._base import RequestModel
from ._union import OTHER, by_type
from .tools import (
    ChatCompletionMessageToolCall,
    ChatCompletionMessageToolCallParam,
    FunctionCall,
    FunctionCallParam,
)

__all__ = [
    "AssistantAudio",
    "AssistantAudioParam",
    "ChatCompletionAssistantMessageParam",
    "ChatCompletionDeveloperMessageParam",
    "ChatCompletionFunctionMessageParam",
    "ChatCompletionSystemMessageParam",
    "ChatCompletionToolMessageParam",
    "ChatCompletionUserMessageParam",
    "ChatMessage",
    "ChatMessageParam",
    "ChatRole",
    "ContentPart",
    "ContentPartParam",
    "FileContentPart",
    "FileContentPartParam",
    "FileData",
    "FileDataParam",
    "ImageContentPart",
    "ImageContentPartParam",
    "ImageURL",
    "ImageURLParam",
    "InputAudio",
    "InputAudioContentPart",
    "InputAudioContentPartParam",
    "InputAudioParam",
    "OtherContentPart",
    "PromptCacheBreakpointParam",
    "RefusalContentPart",
    "RefusalContentPartParam",
    "TextContentPart",
    "TextContentPartParam",
]

ChatRole = Literal["system", "developer", "user", "assistant", "tool", "function"]


# --- content parts (request models) --------------------------------------------------------


class TextContentPart(RequestModel):
    type: Literal["text"] = "text"
    text: str


class ImageURL(RequestModel):
    url: str  # an https URL or a data URL (data:image/png;base64,...)
    detail: str | None = None  # "auto" | "low" | "high" | ...


class ImageContentPart(RequestModel):
    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


class InputAudio(RequestModel):
    data: str  # base64
    format: str  # "wav" | "mp3" | ...


class InputAudioContentPart(RequestModel):
    type: Literal["input_audio"] = "input_audio"
    input_audio: InputAudio


class FileData(RequestModel):
    file_data: str | None = None  # base64, or a data URL
    file_id: str | None = None
    filename: str | None = None


class FileContentPart(RequestModel):
    type: Literal["file"] = "file"
    file: FileData


class RefusalContentPart(RequestModel):
    """A refusal inside an assistant message's content (sent back as history)."""

    type: Literal["refusal"] = "refusal"
    refusal: str


class OtherContentPart(RequestModel):
    """A kind of content part this SDK does not know; sent exactly as given."""

    type: str


_PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")

ContentPart: TypeAlias = Annotated[
    Annotated[TextContentPart, Tag("text")]
    | Annotated[ImageContentPart, Tag("image_url")]
    | Annotated[InputAudioContentPart, Tag("input_audio")]
    | Annotated[FileContentPart, Tag("file")]
    | Annotated[RefusalContentPart, Tag("refusal")]
    | Annotated[OtherContentPart, Tag(OTHER)],
    Discriminator(by_type(_PART_TYPES)),
]


class AssistantAudio(RequestModel):
    """A previous audio reply, referred to by id."""

    id: str


# --- the message (request model) -------------------------------------------------------------


class ChatMessage(RequestModel):
    """One message of a conversation: ``{"role": "user", "content": "Hi"}``.

    An assistant message that called tools has ``tool_calls`` (and often ``content=None``);
    the answer to each call is a ``{"role": "tool", "tool_call_id": ..., "content": ...}``
    message. A ``ChatCompletionMessage`` from a reply is accepted too (as its ``to_param()``).
    """

    role: ChatRole
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    function_call: FunctionCall | None = None  # legacy "functions" API
    audio: AssistantAudio | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_reply(cls, value: Any) -> Any:
        # `messages.append(completion.choices[0].message)` is how many apps continue a chat.
        to_param = getattr(value, "to_param", None)
        return to_param() if callable(to_param) else value


# --- TypedDicts for keyword arguments --------------------------------------------------------


class PromptCacheBreakpointParam(TypedDict, total=False):
    mode: Required[Literal["explicit"]]
    ttl: Literal["30m", "12h"]


class TextContentPartParam(TypedDict, total=False):
    type: Required[Literal["text"]]
    text: Required[str]
    prompt_cache_breakpoint: PromptCacheBreakpointParam


class ImageURLParam(TypedDict, total=False):
    url: Required[str]
    detail: Literal["auto", "low", "high", "original"]


class ImageContentPartParam(TypedDict, total=False):
    type: Required[Literal["image_url"]]
    image_url: Required[ImageURLParam]
    prompt_cache_breakpoint: PromptCacheBreakpointParam


class InputAudioParam(TypedDict):
    data: str
    format: Literal["wav", "mp3"]


class InputAudioContentPartParam(TypedDict, total=False):
    type: Required[Literal["input_audio"]]
    input_audio: Required[InputAudioParam]
    prompt_cache_breakpoint: PromptCacheBreakpointParam


class FileDataParam(TypedDict, total=False):
    file_data: str
    file_id: str
    filename: str


class FileContentPartParam(TypedDict, total=False):
    type: Required[Literal["file"]]
    file: Required[FileDataParam]
    prompt_cache_breakpoint: PromptCacheBreakpointParam


class RefusalContentPartParam(TypedDict):
    type: Literal["refusal"]
    refusal: str


ContentPartParam: TypeAlias = (
    TextContentPartParam | ImageContentPartParam | InputAudioContentPartParam | FileContentPartParam
)


class AssistantAudioParam(TypedDict):
    id: str


class ChatCompletionDeveloperMessageParam(TypedDict, total=False):
    role: Required[Literal["developer"]]
    content: Required[str | list[TextContentPartParam]]
    name: str


class ChatCompletionSystemMessageParam(TypedDict, total=False):
    role: Required[Literal["system"]]
    content: Required[str | list[TextContentPartParam]]
    name: str


class ChatCompletionUserMessageParam(TypedDict, total=False):
    role: Required[Literal["user"]]
    content: Required[str | list[ContentPartParam]]
    name: str


class ChatCompletionAssistantMessageParam(TypedDict, total=False):
    role: Required[Literal["assistant"]]
    content: str | list[TextContentPartParam | RefusalContentPartParam] | None
    name: str
    refusal: str | None
    tool_calls: list[ChatCompletionMessageToolCallParam]
    function_call: FunctionCallParam | None
    audio: AssistantAudioParam | None


class ChatCompletionToolMessageParam(TypedDict):
    role: Literal["tool"]
    content: str | list[TextContentPartParam]
    tool_call_id: str


class ChatCompletionFunctionMessageParam(TypedDict):
    role: Literal["function"]
    content: str | None
    name: str


ChatMessageParam: TypeAlias = (
    ChatCompletionDeveloperMessageParam
    | ChatCompletionSystemMessageParam
    | ChatCompletionUserMessageParam
    | ChatCompletionAssistantMessageParam
    | ChatCompletionToolMessageParam
    | ChatCompletionFunctionMessageParam
)
