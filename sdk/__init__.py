"""llm-sdk: a typed sync and async client for OpenAI-compatible LLM servers.

>>> from sdk import Client
>>> client = Client()  # LLM_SDK_BASE_URL, default http://127.0.0.1:8000/v1  # doctest: +SKIP
>>> client.chat.completions.create(messages=[{"role": "user", "content": "Hi"}])  # doctest: +SKIP

Names are imported lazily on first use, so ``import sdk`` costs almost nothing until a
client (httpx, pydantic, tenacity) is needed; ``sdk.types`` holds the wire models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from . import tokens, tools, types
    from ._async_client import AsyncClient
    from ._client import Client
    from ._exceptions import (
        APIConnectionError,
        APIError,
        APIResponseValidationError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ConflictError,
        ContentFilterFinishReasonError,
        ContextWindowExceededError,
        InternalServerError,
        InvalidRequestParamsError,
        LengthFinishReasonError,
        NotFoundError,
        OutputParseError,
        PermissionDeniedError,
        RateLimitError,
        SDKError,
        StructuredOutputError,
        TokenBudgetError,
        TokenRateLimitError,
        ToolLoopLimitError,
        UnprocessableEntityError,
    )
    from ._protocol import (
        DEFAULT_TIMEOUT,
        ChatCompletionAccumulator,
        CompletionAccumulator,
        RequestOptions,
        RetryPolicy,
        ServerSentEvent,
        SSEDecoder,
    )
    from ._streaming import AsyncStream, Stream
    from .tokens import RateLimiter, TokenBudget, Tokenizer
    from .tools import function_tool, pydantic_function_tool
    from .types import ResponseInfo

__all__ = [
    "DEFAULT_TIMEOUT",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncStream",
    "AuthenticationError",
    "BadRequestError",
    "ChatCompletionAccumulator",
    "Client",
    "CompletionAccumulator",
    "ConflictError",
    "ContentFilterFinishReasonError",
    "ContextWindowExceededError",
    "InternalServerError",
    "InvalidRequestParamsError",
    "LengthFinishReasonError",
    "NotFoundError",
    "OutputParseError",
    "PermissionDeniedError",
    "RateLimitError",
    "RateLimiter",
    "RequestOptions",
    "ResponseInfo",
    "RetryPolicy",
    "SDKError",
    "SSEDecoder",
    "ServerSentEvent",
    "Stream",
    "StructuredOutputError",
    "TokenBudget",
    "TokenBudgetError",
    "TokenRateLimitError",
    "Tokenizer",
    "ToolLoopLimitError",
    "UnprocessableEntityError",
    "__version__",
    "function_tool",
    "pydantic_function_tool",
    "tokens",
    "tools",
    "types",
]

# public name -> the private module that defines it
_LAZY = {
    "AsyncClient": "_async_client",
    "Client": "_client",
    "AsyncStream": "_streaming",
    "Stream": "_streaming",
    "ResponseInfo": "types",
    "types": "",
    "tokens": "",
    "tools": "",
    "function_tool": "tools",
    "pydantic_function_tool": "tools",
    "RateLimiter": "tokens",
    "TokenBudget": "tokens",
    "Tokenizer": "tokens",
    **dict.fromkeys(
        [
            "DEFAULT_TIMEOUT",
            "ChatCompletionAccumulator",
            "CompletionAccumulator",
            "RequestOptions",
            "RetryPolicy",
            "SSEDecoder",
            "ServerSentEvent",
        ],
        "_protocol",
    ),
    **dict.fromkeys(
        [
            "APIConnectionError",
            "APIError",
            "APIResponseValidationError",
            "APIStatusError",
            "APITimeoutError",
            "AuthenticationError",
            "BadRequestError",
            "ConflictError",
            "ContentFilterFinishReasonError",
            "ContextWindowExceededError",
            "InternalServerError",
            "InvalidRequestParamsError",
            "LengthFinishReasonError",
            "NotFoundError",
            "OutputParseError",
            "PermissionDeniedError",
            "RateLimitError",
            "SDKError",
            "StructuredOutputError",
            "TokenBudgetError",
            "TokenRateLimitError",
            "ToolLoopLimitError",
            "UnprocessableEntityError",
        ],
        "_exceptions",
    ),
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'sdk' has no attribute {name!r}")
    if not module_name:  # a subpackage
        return importlib.import_module(f".{name}", __name__)
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
