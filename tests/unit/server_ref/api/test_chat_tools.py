"""Tools and structured outputs in the HTTP layer, over the scripted engine: what reaches the
engine (prompt and grammar), the shapes that come back (OpenAI's message and stream deltas),
and a 400 naming the field for everything the server cannot serve.

The fake engine does not enforce grammars; its scripted reply stands for what a constrained
model writes. Real constrained generation is tested in ``tests/integration`` and ``tests/e2e``.
"""

from __future__ import annotations

import json
from typing import Any, cast

import httpx
import openai
import pytest
from fastapi import FastAPI
from kit.fake_engine import FakeEngine

from sdk.tokens import render_chat
from server_ref.api import create_app
from server_ref.engine.types import ConstraintSpec

USER = {"role": "user", "content": "Weather in Paris?"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}
CALLS = (
    '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, '
    '{"name": "get_time", "arguments": {}}]}'
)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(context_length=4096, reply=CALLS, step_tokens=4)


def chat(**fields: Any) -> dict[str, Any]:
    return {"messages": [USER], "tools": [WEATHER, TIME], **fields}


def constraint_of(engine: FakeEngine) -> ConstraintSpec | None:
    return engine.requests[-1][2].constraint


def sse_chunks(text: str) -> list[dict[str, Any]]:
    events = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


# --- what reaches the engine ---------------------------------------------------------------


async def test_tools_are_rendered_and_the_reply_is_constrained_to_calls(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    r = await client.post("/v1/chat/completions", json=chat(tool_choice="required"))
    assert r.status_code == 200, r.text
    _, prompt_ids, params = engine.requests[-1]
    prompt = render_chat(engine.tokenizer.chat_template or "", [USER], tools=[WEATHER, TIME],
                         tool_choice="required")  # fmt: skip
    assert prompt_ids == engine.tokenizer.encode(prompt)  # exactly what count_chat renders
    assert "# Tools" in prompt and '"name": "get_weather"' in prompt
    spec = params.constraint
    assert spec is not None and spec.kind == "json_schema"
    schema = json.loads(spec.source)
    assert schema["properties"]["tool_calls"]["minItems"] == 1  # required: calls only


async def test_tool_choice_none_renders_no_tools_and_constrains_nothing(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.reply = "Sunny."
    r = await client.post("/v1/chat/completions", json=chat(tool_choice="none"))
    message = r.json()["choices"][0]["message"]
    assert message["content"] == "Sunny." and "tool_calls" not in message
    assert constraint_of(engine) is None
    plain = render_chat(engine.tokenizer.chat_template or "", [USER])
    assert engine.requests[-1][1] == engine.tokenizer.encode(plain)


@pytest.mark.parametrize(
    ("response_format", "kind", "strict"),
    [
        ({"type": "json_object"}, "json_object", False),
        ({"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
         "json_schema", False),
        ({"type": "json_schema",
          "json_schema": {"name": "a", "schema": {"type": "object"}, "strict": True}},
         "json_schema", True),
        ({"type": "text"}, None, False),
    ],
)  # fmt: skip
async def test_response_format_becomes_the_constraint(
    client: httpx.AsyncClient,
    engine: FakeEngine,
    response_format: dict[str, Any],
    kind: str | None,
    strict: bool,
) -> None:
    engine.reply = '{"a": 1}'
    body = {"messages": [USER], "response_format": response_format}
    r = await client.post("/v1/chat/completions", json=body)
    assert r.json()["choices"][0]["message"]["content"] == '{"a": 1}'
    spec = constraint_of(engine)
    assert (spec.kind if spec else None) == kind and (spec.strict if spec else False) == strict
    plain = render_chat(engine.tokenizer.chat_template or "", [USER])
    assert engine.requests[-1][1] == engine.tokenizer.encode(plain)  # the prompt is unchanged


async def test_response_format_next_to_tools_shapes_the_plain_reply(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}}
    engine.reply = '{"response": {"n": 3}}'
    r = await client.post("/v1/chat/completions", json=chat(response_format=fmt))
    assert r.json()["choices"][0]["message"]["content"] == '{"n": 3}'
    spec = constraint_of(engine)
    assert spec is not None
    defs = json.loads(spec.source)["$defs"]
    assert defs["response"]["additionalProperties"] is False  # strict closes it


# --- the shapes that come back ------------------------------------------------------------


async def test_a_tool_reply_is_openais_message(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat())
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    calls = message["tool_calls"]
    assert [c["function"] for c in calls] == [
        {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"name": "get_time", "arguments": "{}"},
    ]
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in calls)
    assert len({c["id"] for c in calls}) == 2


async def test_a_plain_reply_under_auto_is_content(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.reply = '{"response": "It is \\"sunny\\"."}'
    r = await client.post("/v1/chat/completions", json=chat())
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == 'It is "sunny".'
    assert "tool_calls" not in choice["message"]


async def test_a_call_cut_by_max_tokens_finishes_with_length(client: httpx.AsyncClient) -> None:
    cut = CALLS.index("Paris") + 3  # one byte per token
    r = await client.post("/v1/chat/completions", json=chat(max_tokens=cut))
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Par'}


async def test_a_streamed_call_has_openais_deltas(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat(stream=True))
    deltas = [c["choices"][0]["delta"] for c in sse_chunks(r.text)]
    assert deltas[0] == {"role": "assistant"}  # content stays null for a call
    first = deltas[1]["tool_calls"][0]
    assert first["index"] == 0 and first["type"] == "function" and first["id"].startswith("call_")
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    fragments = [
        d["tool_calls"][0]["function"]["arguments"]
        for d in deltas
        if "tool_calls" in d and d["tool_calls"][0]["index"] == 0 and "id" not in d["tool_calls"][0]
    ]
    assert len(fragments) > 1 and "".join(fragments) == '{"city": "Paris"}'  # in pieces
    assert all(set(d["tool_calls"][0]) == {"index", "function"} for d in deltas[2:] if d and
               "id" not in d["tool_calls"][0])  # fmt: skip
    assert sse_chunks(r.text)[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_a_streamed_plain_reply_streams_its_text(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.reply = '{"response": "Sunny and warm today."}'
    r = await client.post("/v1/chat/completions", json=chat(stream=True))
    chunks = sse_chunks(r.text)
    texts = [c["choices"][0]["delta"].get("content") for c in chunks]
    assert "".join(t for t in texts if t) == "Sunny and warm today."
    assert texts[1] == "" and len([t for t in texts if t]) > 3  # begun, then in pieces
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("reply", [CALLS, '{"response": "Sunny \\u00e9t\\u00e9."}'])
async def test_openais_stream_helper_puts_the_stream_together_as_the_reply(
    app: FastAPI, engine: FakeEngine, reply: str
) -> None:
    engine.reply = reply
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    client = openai.AsyncOpenAI(base_url="http://t/v1", api_key="x", http_client=cast(Any, http))
    kwargs: Any = {"model": "fake-model", "messages": [USER], "tools": [WEATHER, TIME]}
    whole = await client.chat.completions.create(**kwargs)
    async with client.chat.completions.stream(**kwargs) as stream:
        final = await stream.get_final_completion()
    await client.close()

    def comparable(message: Any) -> dict[str, Any]:
        data = cast(dict[str, Any], message.model_dump(exclude={"parsed"}))
        for call in data.get("tool_calls") or []:
            call.pop("id")
            call.pop("index", None)  # the helper keeps the stream's index
            call["function"].pop("parsed_arguments", None)
        return data

    assert comparable(final.choices[0].message) == comparable(whole.choices[0].message)
    assert final.choices[0].finish_reason == whole.choices[0].finish_reason


# --- what the server cannot serve ----------------------------------------------------------

PART = "messages[0].content[1]"
BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("invalid schema", {"response_format": {"type": "json_schema",
     "json_schema": {"name": "a", "schema": {"type": "objekt"}}}}, "response_format", "objekt"),
    ("unsupported keyword", {"response_format": {"type": "json_schema", "json_schema": {
     "name": "a", "schema": {"type": "array", "uniqueItems": True}}}}, "response_format",
     "uniqueItems"),
    ("unsupported keyword in a tool", {"tools": [TIME, {"type": "function", "function": {
     "name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "array",
     "uniqueItems": True}}}}}]}, "tools[1].function.parameters", "uniqueItems"),
    ("unknown tool named", {"tools": [WEATHER],
     "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", "'nope'"),
    ("tool without a name", {"tools": [{"type": "function", "function": {}}]},
     "tools[0].function.name", "required"),
    ("duplicate tool names", {"tools": [WEATHER, WEATHER]}, "tools[1].function.name",
     "two tools are named 'get_weather'"),
    ("bad tool name", {"tools": [{"type": "function", "function": {"name": "a b"}}]},
     "tools[0].function.name", "letters, digits"),
    ("custom tool", {"tools": [{"type": "custom", "custom": {"name": "sql"}}]},
     "tools[0].type", "only tools of type 'function'"),
    ("parameters not an object", {"tools": [{"type": "function", "function": {"name": "f",
     "parameters": {"type": "array"}}}]}, "tools[0].function.parameters", "object"),
    ("required without tools", {"tool_choice": "required"}, "tool_choice", "at least one tool"),
    ("named tool without tools", {"tool_choice": {"type": "function",
     "function": {"name": "f"}}}, "tool_choice", "not in tools"),
    ("allowed tool unknown", {"tools": [WEATHER], "tool_choice": {"type": "allowed_tools",
     "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {
     "name": "x"}}]}}}, "tool_choice", "'x'"),
    ("allowed tools mode", {"tools": [WEATHER], "tool_choice": {"type": "allowed_tools",
     "allowed_tools": {"mode": "sometimes", "tools": []}}}, "tool_choice.allowed_tools.mode",
     "'sometimes'"),
    ("custom tool choice", {"tools": [WEATHER], "tool_choice": {"type": "custom",
     "custom": {"name": "sql"}}}, "tool_choice", "'custom'"),
    ("response_format type", {"response_format": {"type": "regex", "regex": "a+"}},
     "response_format.type", "'regex'"),
    ("legacy functions", {"functions": [{"name": "f"}]}, "functions", "send tools"),
    ("image part", {"messages": [{"role": "user", "content": [{"type": "text", "text": "What?"},
     {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}, PART, "text only"),
    ("audio part", {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
     {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}, PART,
     "(audio)"),
    ("file part", {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
     {"type": "file", "file": {"file_id": "f-1"}}]}]}, PART, "(a file)"),
    ("unknown part", {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
     {"type": "video", "video": {}}]}]}, PART, "'video'"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "param", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_what_cannot_be_served_is_a_400_naming_the_field(
    client: httpx.AsyncClient, engine: FakeEngine, body: dict[str, Any], param: str, words: str
) -> None:
    r = await client.post("/v1/chat/completions", json={"messages": [USER], **body})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and words in error["message"], error
    assert engine.requests == []  # nothing reached the engine
    assert (await client.get("/health")).status_code == 200


async def test_tokenize_counts_a_chat_with_tools_as_the_chat_renders_it(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    turns = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1",
         "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "P"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]  # fmt: skip
    body = {"messages": turns, "tools": [WEATHER], "tool_choice": "required"}
    counted = (await client.post("/tokenize", json=body)).json()["count"]
    r = await client.post("/v1/chat/completions", json=body)
    assert r.json()["usage"]["prompt_tokens"] == counted == len(engine.requests[-1][1])
    plain = (await client.post("/tokenize", json={"messages": turns})).json()["count"]
    assert plain < counted


async def test_the_model_card_says_what_the_model_supports(client: httpx.AsyncClient) -> None:
    card = (await client.get("/v1/models/fake-model")).json()
    assert card["capabilities"] == {
        "input_modalities": ["text"],
        "output_modalities": ["text"],
        "tools": True,
        "tool_format": "generic",
        "response_formats": ["text", "json_object", "json_schema"],
    }


async def test_an_engine_reply_outside_the_format_is_a_500_not_a_hang(
    engine: FakeEngine,
) -> None:
    engine.reply = "not json"  # only a grammar bug could do this
    app = create_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        r = await c.post("/v1/chat/completions", json=chat())
        assert r.status_code == 500 and "tool-call format" in r.json()["error"]["message"]
        r = await c.post("/v1/chat/completions", json=chat(stream=True))
        assert '"error"' in r.text and r.text.rstrip().endswith("data: [DONE]")


async def test_a_template_that_renders_tools_gets_them_and_the_same_reply_grammar(
    client: httpx.AsyncClient, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    native = (
        "{% if tools %}<tools>{{ tools | tojson }}</tools>{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "<|im_start|>assistant\n"
    )
    monkeypatch.setattr(engine.tokenizer, "chat_template", native)
    r = await client.post("/v1/chat/completions", json=chat(tool_choice="required"))
    assert r.json()["choices"][0]["finish_reason"] == "tool_calls"
    prompt = engine.tokenizer.decode(engine.requests[-1][1])
    assert prompt.startswith('<tools>[{"type": "function", "function": {"name": "get_weather"')
    assert "# Tools" not in prompt  # the template lists them, not the generic section
    assert (
        "<|im_start|>system\nReply with one JSON object and nothing else, calling tools" in prompt
    )
    spec = constraint_of(engine)
    assert spec is not None and "tool_calls" in json.loads(spec.source)["properties"]
    card = (await client.get("/v1/models/fake-model")).json()
    assert card["capabilities"]["tool_format"] == "template"
