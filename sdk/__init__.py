"""llm-sdk: a typed sync and async client for OpenAI-compatible LLM servers.

>>> from sdk import Client
>>> client = Client()  # LLM_SDK_BASE_URL, default http://127.0.0.1:8000/v1  # doctest: +SKIP
>>> client.chat.completions.create(messages=[{"role": "user", "content": "Hi"}])  # doctest: +SKIP

Names are imported lazily on first use, so ``import sdk`` costs almost nothing until a
client (httpx, pydantic, tenacity) is needed; ``sdk.types`` holds the wire models. The
``TYPE_CHECKING`` block below is the one list of exports (``sdk._lazy`` reads it; ``X as X``
is how a type checker is told a name is re-exported).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._version import __version__

if TYPE_CHECKING:
    from . import tokens as tokens, tools as tools, types as types, vectors as vectors
    from ._async_client import AsyncClient as AsyncClient
    from ._client import Client as Client
    from ._exceptions import (
        APIConnectionError as APIConnectionError,
        APIError as APIError,
        APIResponseValidationError as APIResponseValidationError,
        APIStatusError as APIStatusError,
        APITimeoutError as APITimeoutError,
        AuthenticationError as AuthenticationError,
        BadRequestError as BadRequestError,
        ConflictError as ConflictError,
        ContentFilterFinishReasonError as ContentFilterFinishReasonError,
        ContextWindowExceededError as ContextWindowExceededError,
        InternalServerError as InternalServerError,
        InvalidRequestParamsError as InvalidRequestParamsError,
        LengthFinishReasonError as LengthFinishReasonError,
        NoEndpointError as NoEndpointError,
        NotFoundError as NotFoundError,
        OutputParseError as OutputParseError,
        PermissionDeniedError as PermissionDeniedError,
        RateLimitError as RateLimitError,
        RouterConfigError as RouterConfigError,
        RouterError as RouterError,
        SDKError as SDKError,
        StructuredOutputError as StructuredOutputError,
        TokenBudgetError as TokenBudgetError,
        TokenRateLimitError as TokenRateLimitError,
        ToolLoopLimitError as ToolLoopLimitError,
        UnprocessableEntityError as UnprocessableEntityError,
    )
    from ._policies.counting import TokenCount as TokenCount
    from ._policies.hooks import CallHooks as CallHooks, CallInfo as CallInfo, Hooks as Hooks
    from ._policies.options import CallOptions as CallOptions
    from ._policies.ratelimit import RateLimiter as RateLimiter
    from ._protocol.accumulate import (
        ChatCompletionAccumulator as ChatCompletionAccumulator,
        CompletionAccumulator as CompletionAccumulator,
    )
    from ._protocol.options import (
        DEFAULT_TIMEOUT as DEFAULT_TIMEOUT,
        RequestOptions as RequestOptions,
        RetryPolicy as RetryPolicy,
    )
    from ._protocol.prefix import AffinityPolicy as AffinityPolicy
    from ._protocol.routing import EndpointStatus as EndpointStatus, HealthPolicy as HealthPolicy
    from ._protocol.sse import ServerSentEvent as ServerSentEvent, SSEDecoder as SSEDecoder
    from ._routing.endpoint import Endpoint as Endpoint
    from ._routing.router import AsyncRouter as AsyncRouter, Router as Router
    from ._streaming import AsyncStream as AsyncStream, Stream as Stream
    from .tokens.budget import TokenBudget as TokenBudget
    from .tokens.tokenizer import Tokenizer as Tokenizer
    from .tools import (
        function_tool as function_tool,
        pydantic_function_tool as pydantic_function_tool,
    )
    from .types import ResponseInfo as ResponseInfo

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
__all__ += ["__version__"]
