"""Every sampling field a request model declares reaches the engine's ``SamplingParams``.

Unknown fields are accepted and ignored, so a field that the routes forget to convert is
dropped without a word. Each field of the two request models is either listed in
``NOT_SAMPLING`` with the reason it never reaches the engine, or given a non-default value in
``NON_DEFAULT``; setting that value must change the ``SamplingParams`` the route hands to the
engine. A field added to a request model fails here until it is classified.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from kit.fake_engine import FakeEngine

from server_ref.api.schemas import ServerChatCompletionRequest, ServerCompletionRequest
from server_ref.engine.types import SamplingParams

ENDPOINTS = {
    "chat": ("/v1/chat/completions", ServerChatCompletionRequest),
    "completions": ("/v1/completions", ServerCompletionRequest),
}
BASE: dict[str, dict[str, Any]] = {
    "chat": {"messages": [{"role": "user", "content": "hi"}]},
    "completions": {"prompt": "hi"},
}

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}

# Reviewed: fields that are not sampling controls, and why.
NOT_SAMPLING = {
    "model": "selects the model (404 when it is not ours)",
    "messages": "the prompt",
    "prompt": "the prompt",
    "stream": "the response's shape",
    "stream_options": "the stream's shape (the usage chunk)",
    "user": "an end-user id for the client's own abuse tracking",
    "echo": "the response's text (the prompt prepended)",
    "suffix": "refused with a 400 when set",
    "best_of": "refused with a 400 unless it is 1 (no extra candidates to rank)",
    "functions": "the deprecated form of tools: refused with a 400 (send tools)",
    "function_call": "the deprecated form of tool_choice: refused with a 400",
    # output kinds this text-only server cannot produce: a 400 unless they ask for text
    "audio": "refused with a 400 (text only)",
    "modalities": "refused with a 400 unless it is ['text']",
    "web_search_options": "refused with a 400",
    # hosted-service bookkeeping and hints with no effect on what a local model generates
    "store": "a hosted service's stored-completions flag",
    "metadata": "a hosted service's tags for stored completions",
    "service_tier": "a hosted service's processing tier",
    "prediction": "a latency hint (predicted output); the result is the same without it",
    "reasoning_effort": "for reasoning models; this model does not reason",
    "verbosity": "for reasoning models; this model does not reason",
    "prompt_cache_key": "a hosted service's cache routing hint (prefix caching is automatic)",
    "prompt_cache_retention": "a hosted service's cache policy",
    "prompt_cache_options": "a hosted service's cache policy",
    "safety_identifier": "an end-user id for the client's own abuse tracking",
    "moderation": "a hosted service's moderation setting",
}

# A valid non-default value for every sampling field (of either endpoint).
NON_DEFAULT: dict[str, Any] = {
    "temperature": 0.5,
    "top_p": 0.5,
    "top_k": 5,
    "min_p": 0.5,
    "seed": 7,
    "max_tokens": 5,
    "max_completion_tokens": 5,
    "stop": "xyz",
    "n": 2,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.5,
    "logit_bias": {"5": 1.0},
    "stop_token_ids": [5],
    "ignore_eos": True,
    "logprobs": {"chat": True, "completions": 2},
    "top_logprobs": 3,
    # structured output and tools reach the engine as the grammar of the reply
    # (SamplingParams.constraint); what they do to the prompt is tested in test_chat_tools.py
    "response_format": {"type": "json_object"},
    "tools": [TOOL],
    "tool_choice": "required",
    "parallel_tool_calls": False,
}
# fields that only take effect next to another one (in the baseline too)
CONTEXT: dict[str, dict[str, Any]] = {
    "top_logprobs": {"logprobs": True},
    "tool_choice": {"tools": [TOOL]},
    "parallel_tool_calls": {"tools": [TOOL]},
}


@pytest.fixture
def engine() -> FakeEngine:
    # room for the tool definitions in the prompt, and a reply in the tool-call format
    return FakeEngine(context_length=4096, reply='{"response": "Hi"}')


def fields_of(endpoint: str) -> list[str]:
    return list(ENDPOINTS[endpoint][1].model_fields)


def value_for(name: str, endpoint: str) -> Any:
    value = NON_DEFAULT[name]
    return value[endpoint] if isinstance(value, dict) and endpoint in value else value


async def params_for(
    client: httpx.AsyncClient, engine: FakeEngine, endpoint: str, body: dict[str, Any]
) -> list[SamplingParams]:
    before = len(engine.requests)
    r = await client.post(ENDPOINTS[endpoint][0], json={**BASE[endpoint], **body})
    assert r.status_code == 200, r.text
    return [params for _, _, params in engine.requests[before:]]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_every_request_field_is_classified(endpoint: str) -> None:
    unclassified = set(fields_of(endpoint)) - NOT_SAMPLING.keys() - NON_DEFAULT.keys()
    assert not unclassified, f"add to NOT_SAMPLING (with a reason) or NON_DEFAULT: {unclassified}"


@pytest.mark.parametrize(
    ("endpoint", "name"),
    [(e, n) for e in ENDPOINTS for n in fields_of(e) if n not in NOT_SAMPLING],
)
async def test_a_sampling_field_changes_what_the_engine_gets(
    client: httpx.AsyncClient, engine: FakeEngine, endpoint: str, name: str
) -> None:
    context = CONTEXT.get(name, {})
    baseline = await params_for(client, engine, endpoint, context)
    changed = await params_for(
        client, engine, endpoint, {**context, name: value_for(name, endpoint)}
    )
    assert changed != baseline, f"{name} did not reach SamplingParams"


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("chat", {"user": "u-1", "model": "fake-model", "stream": False}),
        ("completions", {"user": "u-1", "echo": True, "best_of": 1}),
    ],
)
async def test_fields_that_are_not_sampling_leave_it_alone(
    client: httpx.AsyncClient, engine: FakeEngine, endpoint: str, body: dict[str, Any]
) -> None:
    assert await params_for(client, engine, endpoint, body) == await params_for(
        client, engine, endpoint, {}
    )
