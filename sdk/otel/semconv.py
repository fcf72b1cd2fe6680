"""Span attributes of an LLM call after OpenTelemetry's GenAI semantic conventions (pure).

Names from the conventions' development status (gen-ai-spans.md), plus ``gen_ai.system``,
the name older backends still read, and a few ``llm_sdk.*`` ones of our own for what the
conventions do not name (attempts, failovers). No OpenTelemetry import here: these are plain
dicts, so they are tested without it and a server can mirror them (see ``tracing``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from sdk._policies.hooks import CallInfo

__all__ = [
    "TIME_TO_FIRST_CHUNK",
    "error_type",
    "request_attributes",
    "response_attributes",
    "retry_attributes",
    "server_attributes",
    "span_name",
]

TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"  # seconds, streams only
ATTEMPTS = "llm_sdk.attempts"  # HTTP attempts the call made, retries and failovers included

# request body field -> attribute, when the caller set it
_REQUEST_FIELDS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
    "n": "gen_ai.request.choice.count",
}


def span_name(call: CallInfo) -> str:
    """``"{operation} {model}"`` (the conventions' name), else ``"GET /models"``."""
    if call.operation is None:
        return f"{call.method} {call.path}"
    return call.operation if call.model is None else f"{call.operation} {call.model}"


def request_attributes(call: CallInfo, provider: str) -> dict[str, Any]:
    """What is known when the call starts."""
    attributes: dict[str, Any] = {}
    if call.operation is not None:
        attributes["gen_ai.operation.name"] = call.operation
        attributes["gen_ai.provider.name"] = provider
        attributes["gen_ai.system"] = provider
    if call.model is not None:
        attributes["gen_ai.request.model"] = call.model
    for field, name in _REQUEST_FIELDS.items():
        value = call.params.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[name] = value
    stop = call.params.get("stop")
    if stop:
        attributes["gen_ai.request.stop_sequences"] = [stop] if isinstance(stop, str) else stop
    if call.stream:
        attributes["gen_ai.request.stream"] = True  # not in the conventions; handy in queries
    return attributes


def server_attributes(url: httpx.URL) -> dict[str, Any]:
    """``server.address`` / ``server.port`` of the server a request goes to."""
    port = url.port or (443 if url.scheme == "https" else 80)
    return {"server.address": url.host, "server.port": port}


def response_attributes(result: object) -> dict[str, Any]:
    """What the answer tells: model, id, finish reasons, token usage (``usage``'s counts)."""
    attributes: dict[str, Any] = {}
    model, id_ = getattr(result, "model", None), getattr(result, "id", None)
    if isinstance(model, str) and model:
        attributes["gen_ai.response.model"] = model
    if isinstance(id_, str) and id_:
        attributes["gen_ai.response.id"] = id_
    reasons = [
        str(choice.finish_reason)
        for choice in getattr(result, "choices", None) or ()
        if getattr(choice, "finish_reason", None) is not None
    ]
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = reasons
    usage = getattr(result, "usage", None)
    if usage is not None:
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        if isinstance(prompt, int):
            attributes["gen_ai.usage.input_tokens"] = prompt
        if isinstance(completion, int):
            attributes["gen_ai.usage.output_tokens"] = completion
    return attributes


def error_type(error: BaseException) -> str:
    """``error.type``: the SDK's error class (``RateLimitError``, ``APITimeoutError``...);
    ``"cancelled"`` for a call abandoned by its caller (a cancelled task, a signal)."""
    # a flow only ever sees GeneratorExit when its caller stops driving it
    return "cancelled" if isinstance(error, GeneratorExit) else type(error).__name__


def retry_attributes(
    failed: httpx.Request, reason: str, request: httpx.Request, attempt: int
) -> tuple[str, Mapping[str, Any]]:
    """The span event for an attempt that failed and was followed by ``request``: ``"retry"``
    on the same server, ``"failover"`` to another."""
    same = (failed.url.host, failed.url.port) == (request.url.host, request.url.port)
    attributes: dict[str, Any] = {"error.type": reason, "llm_sdk.attempt": attempt}
    attributes.update(server_attributes(failed.url))
    if not same:
        next_server = server_attributes(request.url)
        attributes["llm_sdk.next.server.address"] = next_server["server.address"]
        attributes["llm_sdk.next.server.port"] = next_server["server.port"]
    return ("retry" if same else "failover"), attributes
