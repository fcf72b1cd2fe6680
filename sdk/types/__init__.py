"""The wire contract: pydantic models for every request and response body.

This package is the single definition of the OpenAI-compatible wire format used by both the
SDK and ``server_ref`` (which imports these models instead of keeping a second copy).

* ``*Request`` — request bodies (strict types, unknown fields forwarded).
* ``*CreateParams`` / ``*Params`` — the same fields as ``TypedDict``s, for keyword arguments.
* everything else — response bodies (lax types, unknown fields kept).
"""

from __future__ import annotations

from ._base import APIObject, RequestModel, ResponseInfo
from .chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionCreateParams,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatCompletionTokenLogprob,
    ChatMessage,
    ChatMessageParam,
    ChatRole,
    Choice,
    ChoiceDelta,
    ChoiceLogprobs,
    ChunkChoice,
    TextContentPart,
    TextContentPartParam,
    TopLogprob,
)
from .completion import (
    Completion,
    CompletionChoice,
    CompletionCreateParams,
    CompletionLogprobs,
    CompletionRequest,
    PromptInput,
)
from .embedding import (
    CreateEmbeddingResponse,
    Embedding,
    EmbeddingCreateParams,
    EmbeddingRequest,
    EmbeddingUsage,
)
from .error import ErrorObject, ErrorResponse
from .model import Model, ModelList
from .shared import (
    CompletionUsage,
    SamplingFields,
    SamplingParamsDict,
    StreamOptions,
    StreamOptionsParam,
)
from .tokenization import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeParams,
    TokenizeRequest,
    TokenizeResponse,
)
from .tokenizer import TokenizerExport

__all__ = [
    "APIObject",
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
    "Completion",
    "CompletionChoice",
    "CompletionCreateParams",
    "CompletionLogprobs",
    "CompletionRequest",
    "CompletionUsage",
    "CreateEmbeddingResponse",
    "DetokenizeRequest",
    "DetokenizeResponse",
    "Embedding",
    "EmbeddingCreateParams",
    "EmbeddingRequest",
    "EmbeddingUsage",
    "ErrorObject",
    "ErrorResponse",
    "Model",
    "ModelList",
    "PromptInput",
    "RequestModel",
    "ResponseInfo",
    "SamplingFields",
    "SamplingParamsDict",
    "StreamOptions",
    "StreamOptionsParam",
    "TextContentPart",
    "TextContentPartParam",
    "TokenizeParams",
    "TokenizeRequest",
    "TokenizeResponse",
    "TokenizerExport",
    "TopLogprob",
]
