"""Constrained decoding through a real server on the tiny model (random weights, so its
output is noise: whatever it writes, the grammar must make it valid).

Checked end to end: json_schema and json_object replies parse and validate, forced tool
calls have arguments valid for their tool, a streamed call adds up to the reply (greedy),
constrained and unconstrained requests running together do not change each other, and a
schema the grammar engine refuses is a 400 that leaves the server healthy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from kit.live_clients import OpenAICalls
from kit.live_server import LiveServer, live_server
from kit.tinymodel import write_tiny_gguf

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "ok": {"type": "boolean"},
        "n": {"type": "integer", "minimum": 0, "maximum": 999},
        "color": {"enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
    },
    "required": ["name", "ok", "n", "color", "tags"],
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA, "strict": True}}
TOOL = {
    "type": "function",
    "function": {
        "name": "set_level",
        "parameters": {
            "type": "object",
            "properties": {"level": {"type": "integer", "minimum": 1, "maximum": 9}},
            "required": ["level"],
            "additionalProperties": False,
        },
    },
}
MESSAGES = [{"role": "user", "content": "Fill in the form."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The tiny model with a 2048-token window: the tool section alone is ~450 of its
    one-byte tokens, most of the shared tiny server's 512."""
    tmp = tmp_path_factory.mktemp("tiny-2k")
    gguf = write_tiny_gguf(tmp / "tiny-2k.gguf", context_length=2048)
    args = ["--model", str(gguf), "--device", "cpu", "--kv-cache-mib", "16"]
    with live_server(args, log_dir=tmp, env={"OMP_NUM_THREADS": "1"}) as live:
        yield live


@pytest.fixture
def base_url(server: LiveServer) -> str:  # the api and http fixtures use this server
    return server.base_url


@pytest.fixture
def model_id() -> str:
    return "tiny-2k"


async def chat(api: OpenAICalls, model_id: str, **kwargs: Any) -> Any:
    args = {"model": model_id, "messages": MESSAGES, "max_tokens": 120, "temperature": 0}
    return await api.create("chat", **{**args, **kwargs})


async def test_a_json_schema_reply_follows_the_schema(api: OpenAICalls, model_id: str) -> None:
    for seed in (None, 1, 2):
        temperature = 0.0 if seed is None else 1.0
        reply = await chat(
            api, model_id, response_format=FORMAT, seed=seed, temperature=temperature
        )
        assert reply.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(reply.choices[0].message.content), SCHEMA)
    reply = await chat(api, model_id, response_format={"type": "json_object"}, max_tokens=400)
    if reply.choices[0].finish_reason == "stop":  # random weights may write a long object
        assert isinstance(json.loads(reply.choices[0].message.content), dict)


async def test_forced_calls_are_valid_and_stream_like_the_reply(
    api: OpenAICalls, model_id: str
) -> None:
    args = {"tools": [TOOL], "tool_choice": "required", "parallel_tool_calls": False}
    whole = await chat(api, model_id, **args)
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "set_level"
    jsonschema.validate(json.loads(call.function.arguments), TOOL["function"]["parameters"])
    chunks = await chat(api, model_id, stream=True, **args)
    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id.startswith("call_") and deltas[0].function.name == "set_level"
    assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_constrained_and_free_requests_together_do_not_change_each_other(
    api: OpenAICalls, model_id: str
) -> None:
    free = {"max_tokens": 24, "extra_body": {"ignore_eos": True}}
    alone = (await chat(api, model_id, **free)).choices[0].message.content
    constrained_alone = (await chat(api, model_id, response_format=FORMAT)).choices[0]
    together = await asyncio.gather(
        *(chat(api, model_id, **free) for _ in range(3)),
        *(chat(api, model_id, response_format=FORMAT) for _ in range(3)),
    )
    assert [r.choices[0].message.content for r in together[:3]] == [alone] * 3
    assert all(
        r.choices[0].message.content == constrained_alone.message.content for r in together[3:]
    )


async def test_a_schema_the_grammar_engine_refuses_is_a_400_and_the_server_goes_on(
    http: httpx.AsyncClient, model_id: str
) -> None:
    bad = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?=x)"}}}
    body = {
        "model": model_id,
        "messages": MESSAGES,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": bad}},
    }
    r = await http.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "response_format"
    assert (await http.get("/health")).status_code == 200
    ok = await http.post("/v1/chat/completions", json={**body, "response_format": FORMAT})
    assert ok.status_code == 200
    jsonschema.validate(json.loads(ok.json()["choices"][0]["message"]["content"]), SCHEMA)


@pytest.mark.parametrize("stream", [False, True])
async def test_constrained_logprobs_are_json(
    http: httpx.AsyncClient, model_id: str, stream: bool
) -> None:
    body = {
        "model": model_id,
        "messages": MESSAGES,
        "response_format": FORMAT,
        "logprobs": True,
        "top_logprobs": 20,
        "max_tokens": 5,
        "stream": stream,
    }
    r = await http.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert "Infinity" not in r.text and "NaN" not in r.text  # -inf is sent as -9999.0
    assert "-9999.0" in r.text  # the grammar allows fewer than 20 tokens at the start
