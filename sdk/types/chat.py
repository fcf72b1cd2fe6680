"""``POST /v1/chat/completions``: request, response, stream chunk, logprobs.

Shapes follow OpenAI's Chat Completions API field for field, so the official ``openai``
client parses a server built on these models, and this SDK parses OpenAI-compatible servers.
Messages and content parts live in ``chat_messages``, tools and tool calls in ``tools``,
response formats in ``response_format``; this module puts them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Required, TypedDict, cast

from pydantic import Field

from ._base import APIObject, RequestModel, omitted_if_none
from .chat_messages import (
    ChatCompletionAssistantMessageParam,
    ChatMessage,
    ChatMessageParam,
    TextContentPart,
    TextContentPartParam,
)
from .response_format import ResponseFormat, ResponseFormatParam
from .shared import CompletionUsage, SamplingFields, SamplingParamsDict
from .tools import (
    ChatCompletionMessageToolCall,
    ChatCompletionMessageToolCallParam,
    ChatCompletionTool,
    ChatCompletionToolChoice,
    ChatCompletionToolChoiceOptionParam,
    ChatCompletionToolParam,
    ChoiceDeltaFunctionCall,
    ChoiceDeltaToolCall,
    FunctionCall,
    FunctionCallOption,
    FunctionCallOptionParam,
    FunctionDefinition,
    FunctionDefinitionParam,
)

__all__ = [
    "Annotation",
    "AudioOutput",
    "AudioOutputParam",
    "ChatCompletion",
    "ChatCompletionAudio",
    "ChatCompletionChunk",
    "ChatCompletionCreateParams",
    "ChatCompletionCreateParamsBase",
    "ChatCompletionMessage",
    "ChatCompletionParseParams",
    "ChatCompletionRequest",
    "ChatCompletionTokenLogprob",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaAudio",
    "ChoiceLogprobs",
    "ChunkChoice",
    "Prediction",
    "PredictionParam",
    "TopLogprob",
    "URLCitation",
]


# --- request ---------------------------------------------------------------------------


class AudioOutput(RequestModel):
    """``audio={"format": "wav", "voice": "alloy"}`` with ``modalities=["text", "audio"]``."""

    format: str
    voice: str | dict[str, Any]


class Prediction(RequestModel):
    """Predicted Outputs: text most of the reply is expected to repeat."""

    type: Literal["content"] = "content"
    content: str | list[TextContentPart]


class ChatCompletionRequest(SamplingFields):
    """Body of ``POST /v1/chat/completions``.

    >>> ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "Hi"}])
    ... # doctest: +SKIP
    """

    # Lax containers so tuples and ``ChatMessage`` objects are accepted; items stay strict.
    messages: list[ChatMessage] = Field(strict=False)
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[ChatCompletionTool] | None = Field(default=None, strict=False)
    tool_choice: ChatCompletionToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    functions: list[FunctionDefinition] | None = Field(default=None, strict=False)  # legacy
    function_call: Literal["none", "auto"] | FunctionCallOption | None = None  # legacy
    modalities: list[str] | None = None
    audio: AudioOutput | None = None
    prediction: Prediction | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    service_tier: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    web_search_options: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    safety_identifier: str | None = None
    moderation: dict[str, Any] | None = None


class AudioOutputParam(TypedDict):
    format: Literal["wav", "aac", "mp3", "flac", "opus", "pcm16"]
    voice: str | dict[str, str]


class PredictionParam(TypedDict):
    type: Literal["content"]
    content: str | list[TextContentPartParam]


class ChatCompletionCreateParamsBase(SamplingParamsDict, total=False):
    """The keyword arguments every chat method takes (``run_tools`` takes exactly these)."""

    messages: Required[Sequence[ChatMessageParam | ChatMessage | ChatCompletionMessage]]
    max_completion_tokens: int | None
    logprobs: bool | None
    top_logprobs: int | None
    tool_choice: ChatCompletionToolChoiceOptionParam | None
    parallel_tool_calls: bool | None
    functions: Sequence[FunctionDefinitionParam] | None
    function_call: Literal["none", "auto"] | FunctionCallOptionParam | None
    modalities: list[Literal["text", "audio"]] | None
    audio: AudioOutputParam | None
    prediction: PredictionParam | None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None
    verbosity: Literal["low", "medium", "high"] | None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None
    store: bool | None
    metadata: dict[str, str] | None
    web_search_options: dict[str, Any] | None
    prompt_cache_key: str | None
    prompt_cache_retention: Literal["in_memory", "24h"] | None
    prompt_cache_options: dict[str, Any] | None
    safety_identifier: str | None
    moderation: dict[str, Any] | None


class ChatCompletionParseParams(ChatCompletionCreateParamsBase, total=False):
    """Keyword arguments of ``parse`` and ``stream`` (``response_format`` is a type there)."""

    tools: Sequence[ChatCompletionToolParam] | None


class ChatCompletionCreateParams(ChatCompletionParseParams, total=False):
    """Keyword arguments of ``client.chat.completions.create`` (``stream`` aside)."""

    response_format: ResponseFormatParam | None


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


class URLCitation(APIObject):
    url: str
    title: str = ""
    start_index: int = 0
    end_index: int = 0


class Annotation(APIObject):
    """A citation in the reply (web search): ``type="url_citation"`` with ``url_citation``."""

    type: str = "url_citation"
    url_citation: URLCitation | None = None


class ChatCompletionAudio(APIObject):
    """An audio reply (``modalities=["text", "audio"]``): base64 ``data`` and its transcript."""

    id: str
    data: str = ""
    expires_at: int | None = None
    transcript: str = ""


class ChatCompletionMessage(APIObject):
    """The model's message. With tools it may have ``tool_calls`` and ``content=None``.

    ``reasoning_content`` (vLLM, DeepSeek, llama.cpp) or ``reasoning`` (newer vLLM,
    OpenRouter) carry a reasoning model's thinking when the server separates it.
    """

    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = omitted_if_none()
    function_call: FunctionCall | None = omitted_if_none()
    annotations: list[Annotation] | None = omitted_if_none()
    audio: ChatCompletionAudio | None = omitted_if_none()
    reasoning_content: str | None = omitted_if_none()
    reasoning: str | None = omitted_if_none()

    def to_param(self) -> ChatCompletionAssistantMessageParam:
        """This message as the next request's history (``messages.append(...)``).

        Reasoning text and annotations are left out: services reject or ignore them as
        input. Tool calls keep any extra fields (some services need them back).

        >>> messages.append(reply.choices[0].message.to_param())  # doctest: +SKIP
        """
        param: ChatCompletionAssistantMessageParam = {"role": "assistant", "content": self.content}
        if self.refusal is not None:
            param["refusal"] = self.refusal
        if self.tool_calls:
            # (a parsed completion's calls also hold parsed_arguments: local, never sent)
            skip = {"function": {"parsed_arguments"}}
            calls = [
                c.model_dump(mode="json", exclude_none=True, exclude=skip) for c in self.tool_calls
            ]
            param["tool_calls"] = cast(list[ChatCompletionMessageToolCallParam], calls)
        if self.function_call is not None:
            param["function_call"] = {
                "name": self.function_call.name,
                "arguments": self.function_call.arguments,
            }
        if self.audio is not None:
            param["audio"] = {"id": self.audio.id}
        return param


class Choice(APIObject):
    index: int
    message: ChatCompletionMessage
    # "stop" | "length" | "tool_calls" | "content_filter" | ...; a plain str so servers with
    # extra reasons still parse.
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
    service_tier: str | None = omitted_if_none()


# --- stream chunk ------------------------------------------------------------------------


class ChoiceDeltaAudio(APIObject):
    id: str | None = None
    data: str | None = None
    expires_at: int | None = None
    transcript: str | None = None


class ChoiceDelta(APIObject):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None
    function_call: ChoiceDeltaFunctionCall | None = None
    audio: ChoiceDeltaAudio | None = None
    annotations: list[Annotation] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


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
    service_tier: str | None = omitted_if_none()
