"""The sans-I/O core of the SDK: every decision, no sockets, no sleeping, no httpx calls.

``httpx.Request`` / ``httpx.Response`` appear only as data. The modules, bottom up:

* ``options``    — client configuration (defaults, ``LLM_SDK_*`` variables) and per-call options
* ``request``    — endpoint descriptions (``APICall``), parameter validation, request building
* ``retry``      — which failures to retry and how long to wait (tenacity as a state machine)
* ``sse``        — a push-style WHATWG Server-Sent Events decoder
* ``stream``     — SSE events to typed chunks: ``[DONE]``, in-stream errors, truncation
* ``deltas``     — the merge rules for streamed message deltas (tool calls by index ...)
* ``accumulate`` — chunks folded back into the non-streaming result
* ``strict_schema`` / ``structured`` — strict JSON schemas from types; ``parse()``'s results
* ``function_tools`` / ``tool_loop`` — tools from Python functions; the tool-running loop
* ``actions``    — what a flow asks its driver to do (send, read, close, sleep)
* ``flow``       — the per-call generator that ties it together; the clients drive it

Names are exported lazily (each submodule loads on first use): the clients need only
``options`` and ``actions`` to exist, so creating one loads no pydantic model; the first call
loads the rest.

Rule: nothing in this package may block, sleep or touch the network, so all of it is tested
bytes-in / objects-out, with 100% branch coverage.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .accumulate import Accumulator, ChatCompletionAccumulator, CompletionAccumulator
    from .actions import Action, Close, Flow, ReadBody, ReadChunk, Send, Sent, Sleep
    from .flow import (
        AttemptHooks,
        StreamStart,
        call_flow,
        make_status_error,
        parse_response,
        response_info,
        stream_flow,
    )
    from .options import (
        API_KEY_ENV,
        BASE_URL_ENV,
        DEFAULT_BASE_URL,
        DEFAULT_LIMITS,
        DEFAULT_TIMEOUT,
        ClientConfig,
        ClientOptions,
        RequestOptions,
        RetryPolicy,
        TimeoutTypes,
        make_config,
        split_options,
        to_timeout,
        update_config,
    )
    from .request import (
        IDEMPOTENCY_HEADER,
        RETRY_COUNT_HEADER,
        APICall,
        build_request,
        chat_completion_call,
        chat_completion_stream_call,
        completion_call,
        completion_stream_call,
        detokenize_call,
        embedding_call,
        model_list_call,
        model_retrieve_call,
        tokenize_call,
    )
    from .retry import backoff_delay, new_retrying, parse_retry_after, retry_delay, should_retry
    from .sse import ServerSentEvent, SSEDecoder
    from .stream import ChunkDecoder, stream_error
    from .structured import (
        ParseSpec,
        parse_call,
        parse_chat_completion,
        parse_stream_call,
        pydantic_function_tool,
    )
    from .tool_loop import ToolLoopResult

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "IDEMPOTENCY_HEADER",
    "RETRY_COUNT_HEADER",
    "APICall",
    "Accumulator",
    "Action",
    "AttemptHooks",
    "ChatCompletionAccumulator",
    "ChunkDecoder",
    "ClientConfig",
    "ClientOptions",
    "Close",
    "CompletionAccumulator",
    "Flow",
    "ParseSpec",
    "ReadBody",
    "ReadChunk",
    "RequestOptions",
    "RetryPolicy",
    "SSEDecoder",
    "Send",
    "Sent",
    "ServerSentEvent",
    "Sleep",
    "StreamStart",
    "TimeoutTypes",
    "ToolLoopResult",
    "backoff_delay",
    "build_request",
    "call_flow",
    "chat_completion_call",
    "chat_completion_stream_call",
    "completion_call",
    "completion_stream_call",
    "detokenize_call",
    "embedding_call",
    "make_config",
    "make_status_error",
    "model_list_call",
    "model_retrieve_call",
    "new_retrying",
    "parse_call",
    "parse_chat_completion",
    "parse_response",
    "parse_retry_after",
    "parse_stream_call",
    "pydantic_function_tool",
    "response_info",
    "retry_delay",
    "should_retry",
    "split_options",
    "stream_error",
    "stream_flow",
    "to_timeout",
    "tokenize_call",
    "update_config",
]

# name -> the submodule that defines it
_LAZY = {
    "Accumulator": "accumulate",
    "ChatCompletionAccumulator": "accumulate",
    "CompletionAccumulator": "accumulate",
    "Action": "actions",
    "Close": "actions",
    "Flow": "actions",
    "ReadBody": "actions",
    "ReadChunk": "actions",
    "Send": "actions",
    "Sent": "actions",
    "Sleep": "actions",
    "AttemptHooks": "flow",
    "StreamStart": "flow",
    "call_flow": "flow",
    "make_status_error": "flow",
    "parse_response": "flow",
    "response_info": "flow",
    "stream_flow": "flow",
    "API_KEY_ENV": "options",
    "BASE_URL_ENV": "options",
    "DEFAULT_BASE_URL": "options",
    "DEFAULT_LIMITS": "options",
    "DEFAULT_TIMEOUT": "options",
    "ClientConfig": "options",
    "ClientOptions": "options",
    "RequestOptions": "options",
    "RetryPolicy": "options",
    "TimeoutTypes": "options",
    "make_config": "options",
    "split_options": "options",
    "to_timeout": "options",
    "update_config": "options",
    "IDEMPOTENCY_HEADER": "request",
    "RETRY_COUNT_HEADER": "request",
    "APICall": "request",
    "build_request": "request",
    "chat_completion_call": "request",
    "chat_completion_stream_call": "request",
    "completion_call": "request",
    "completion_stream_call": "request",
    "detokenize_call": "request",
    "embedding_call": "request",
    "model_list_call": "request",
    "model_retrieve_call": "request",
    "tokenize_call": "request",
    "backoff_delay": "retry",
    "new_retrying": "retry",
    "parse_retry_after": "retry",
    "retry_delay": "retry",
    "should_retry": "retry",
    "ServerSentEvent": "sse",
    "ParseSpec": "structured",
    "parse_call": "structured",
    "parse_chat_completion": "structured",
    "parse_stream_call": "structured",
    "pydantic_function_tool": "structured",
    "ToolLoopResult": "tool_loop",
    "SSEDecoder": "sse",
    "ChunkDecoder": "stream",
    "stream_error": "stream",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
