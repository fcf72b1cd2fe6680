"""Replies in the shapes hosted services send (OpenAI, Azure, vLLM, DeepSeek), and their streams.

Each ``REPLIES`` entry is a non-streamed chat completion body; ``stream_of(body)`` cuts it
into the chunks a service would stream for it: the role first, text in pieces, each tool
call's id/type/name once and its arguments in pieces, ``finish_reason`` on its own chunk,
and usage in a last chunk with no choices. Unknown fields sit at every level (top, choice,
message, tool call); top-level and choice-level ones ride on the first chunk, as services
send them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

ID, CREATED, MODEL = "chatcmpl-abc123", 1_760_000_000, "gpt-4o-2024-08-06"

USAGE_DETAILS = {
    "prompt_tokens": 120,
    "completion_tokens": 58,
    "total_tokens": 178,
    "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 12,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 3,
        "rejected_prediction_tokens": 1,
    },
}


def reply(message: dict[str, Any], finish_reason: str = "stop", **extra: Any) -> dict[str, Any]:
    choice_extra = extra.pop("choice_extra", {})
    return {
        "id": ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason,
                **choice_extra,
            }
        ],
        "usage": USAGE_DETAILS,
        "service_tier": "default",
        "system_fingerprint": "fp_50cad350e4",
        **extra,
    }


PARALLEL_TOOL_CALLS = reply(
    {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "annotations": [],
        "tool_calls": [
            {
                "id": "call_paris",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "C"}'},
                # Gemini's OpenAI endpoint puts a thought signature on calls
                "extra_content": {"google": {"thought_signature": "c2ln"}},
            },
            {
                "id": "call_tokyo",
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"tz": "Asia/Tokyo"}'},
            },
        ],
    },
    "tool_calls",
    prompt_filter_results=[{"prompt_index": 0, "content_filter_results": {}}],  # Azure
    choice_extra={"content_filter_results": {"hate": {"filtered": False}}},
)

ANNOTATED = reply(
    {
        "role": "assistant",
        "content": "Paris hosts the 2024 Olympics [1].",
        "refusal": None,
        "annotations": [
            {
                "type": "url_citation",
                "url_citation": {
                    "url": "https://example.org/olympics",
                    "title": "Olympics",
                    "start_index": 30,
                    "end_index": 33,
                },
            }
        ],
    },
    choice_extra={"stop_reason": None},
)

REASONING = reply(  # vLLM / DeepSeek: the thinking beside the answer
    {
        "role": "assistant",
        "content": "The answer is 4.",
        "reasoning_content": "2 plus 2 is 4; say so briefly.",
        "reasoning": "2 plus 2 is 4; say so briefly.",
    },
    choice_extra={"stop_reason": 128009},
    kv_transfer_params=None,
    prompt_logprobs=None,
)

REFUSAL = reply({"role": "assistant", "content": None, "refusal": "I can't help with that."})

AUDIO = reply(
    {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "audio": {
            "id": "audio_abc",
            "data": "UklGRiQAAABXQVZFZm10IBAAAAABAAEA",
            "expires_at": 1_760_003_600,
            "transcript": "Hello there, how can I help?",
        },
    }
)

LEGACY_FUNCTION_CALL = reply(
    {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    },
    "function_call",
)

REPLIES = {
    "parallel-tool-calls": PARALLEL_TOOL_CALLS,
    "annotations": ANNOTATED,
    "reasoning": REASONING,
    "refusal": REFUSAL,
    "audio": AUDIO,
    "legacy-function-call": LEGACY_FUNCTION_CALL,
}


def pieces(text: str, n: int = 3) -> list[str]:
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def stream_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunks a service streams for the non-streamed ``body`` (see the module docstring)."""
    head = {key: body.get(key) for key in ("id", "created", "model", "system_fingerprint")}
    head["object"] = "chat.completion.chunk"
    top_extra = {
        k: v
        for k, v in body.items()
        if k not in ("id", "object", "created", "model", "system_fingerprint", "choices", "usage")
    }
    choice = body["choices"][0]
    known = ("index", "message", "logprobs", "finish_reason")
    choice_extra = {k: v for k, v in choice.items() if k not in known}
    message = copy.deepcopy(choice["message"])
    deltas: list[dict[str, Any]] = [{"role": message.pop("role")}]
    for key in ("content", "refusal", "reasoning_content", "reasoning"):
        text = message.pop(key, None)
        if text is not None:
            deltas += [{key: piece} for piece in pieces(text)]
    for index, call in enumerate(message.pop("tool_calls", None) or []):
        function = call.pop("function")
        first = {"index": index, **call, "function": {"name": function["name"], "arguments": ""}}
        deltas.append({"tool_calls": [first]})
        deltas += [
            {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            for piece in pieces(function["arguments"])
        ]
    function_call = message.pop("function_call", None)
    if function_call:
        deltas.append({"function_call": {"name": function_call["name"], "arguments": ""}})
        deltas += [{"function_call": {"arguments": p}} for p in pieces(function_call["arguments"])]
    audio = message.pop("audio", None)
    if audio:
        deltas.append({"audio": {"id": audio["id"], "expires_at": audio["expires_at"]}})
        deltas += [{"audio": {"data": p}} for p in pieces(audio["data"])]
        deltas += [{"audio": {"transcript": p}} for p in pieces(audio["transcript"])]
    deltas[0].update(message)  # what is left (annotations, unknown fields) comes with the role
    chunks = [
        {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
        for delta in deltas
    ]
    chunks[0].update(top_extra)
    chunks[0]["choices"][0].update(choice_extra)
    last = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": choice["finish_reason"]}
    chunks.append({**head, "choices": [last]})
    chunks.append({**head, "choices": [], "usage": body["usage"]})
    return chunks


def sse_body(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + (
        b"data: [DONE]\n\n"
    )


def without_nulls(value: Any) -> Any:
    """``value`` with every ``null`` member removed (what ``exclude_none`` dumps compare with)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value
