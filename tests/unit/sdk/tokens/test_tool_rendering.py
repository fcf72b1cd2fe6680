"""Chats with tools as prompt text (``render_chat``), counted (``count_chat``), and the generic
format's reply schema and parser."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from kit.tokenizer_server import toy_tokenizer

from sdk.tokens import (
    active_tools,
    render_chat,
    render_chat_template,
    template_messages,
    template_uses_tools,
    tool_reply_schema,
)
from sdk.tokens.estimates import ByteEstimateTokenizer, OpenAITokenizer
from sdk.tokens.hosted import hosted_tokenizer
from sdk.types import ChatCompletionRequest

# SmolLM2's template as stored in its GGUF (ChatML with a default system prompt).
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# A tool-aware template in Hugging Face's convention (the shape of Qwen 2.5's, shortened).
NATIVE = (
    "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }}:"
    "{{ t.function.parameters | tojson }};{% endfor %}</tools>\n{% endif %}"
    "{% for m in messages %}[{{ m.role }}]"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}<call>{{ c.function.name }}"
    "{{ c.function.arguments | tojson }}</call>{% endfor %}"
    "{% elif m.role == 'tool' %}<result id={{ m.tool_call_id }}>{{ m.content }}</result>"
    "{% else %}{{ m.content }}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)

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
SQL = {"type": "custom", "custom": {"name": "sql"}}
USER = {"role": "user", "content": "Weather in Paris?"}
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
TOOL_TURNS = [
    USER,
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]

TOOLS_SECTION = (
    "# Tools\n\n"
    "You can call these tools. Each line is one tool: its name, what it does, and the JSON "
    "schema of its arguments.\n\n"
    '{"name": "get_weather", "description": "Weather in a city.", "parameters": {"type": '
    '"object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}\n\n'
)


def test_the_generic_format_on_the_default_models_template() -> None:
    assert not template_uses_tools(SMOLLM2)
    prompt = render_chat(SMOLLM2, TOOL_TURNS, tools=[WEATHER, SQL])
    assert prompt == (
        "<|im_start|>system\n"
        + TOOLS_SECTION
        + 'Reply with one JSON object and nothing else: {"tool_calls": [{"name": "<tool name>", '
        '"arguments": {<arguments>}}]} to call tools, or {"response": "<your reply>"} to reply '
        "to the user directly.<|im_end|>\n"
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n{"tool_calls": [{"name": "get_weather", "arguments": '
        '{"city": "Paris"}}]}<|im_end|>\n'
        '<|im_start|>user\n{"tool_results": [{"name": "get_weather", "content": "sunny"}]}'
        "<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    ("choice", "parallel", "ending"),
    [
        (
            "required",
            None,
            'Reply with one JSON object and nothing else, calling tools: {"tool_calls": '
            '[{"name": "<tool name>", "arguments": {<arguments>}}]}',
        ),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            False,
            "Reply with one JSON object and nothing else, calling the tool 'get_weather': "
            '{"tool_calls": [{"name": "get_weather", "arguments": {<arguments>}}]}\n'
            'The "tool_calls" list holds exactly one call.',
        ),
    ],
)
def test_the_reply_format_follows_tool_choice(choice: Any, parallel: Any, ending: str) -> None:
    system = {"role": "system", "content": "Be brief."}
    prompt = render_chat(
        SMOLLM2, [system, USER], tools=[WEATHER], tool_choice=choice, parallel_tool_calls=parallel
    )
    assert prompt.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    assert prompt.split("<|im_end|>")[0].endswith(ending)


def test_tool_choice_none_and_no_function_tools_render_no_section() -> None:
    plain = render_chat_template(SMOLLM2, template_messages([USER]))
    assert render_chat(SMOLLM2, [USER]) == plain
    assert render_chat(SMOLLM2, [USER], tools=[WEATHER], tool_choice="none") == plain
    assert render_chat(SMOLLM2, [USER], tools=[SQL]) == plain
    assert render_chat(SMOLLM2, [USER], tools=[]) == plain


def history_prompt(**tools: Any) -> str:
    second = {**CALL, "id": "call_2", "function": {"name": "get_time", "arguments": "not json"}}
    return render_chat(
        SMOLLM2,
        [
            USER,
            {"role": "assistant", "content": "Checking.", "tool_calls": [CALL, second]},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "a"}]},
            {"role": "tool", "tool_call_id": "call_2", "content": "b", "name": "clock"},
            {"role": "tool", "tool_call_id": "call_unknown", "content": "c"},
            {"role": "assistant", "content": "Done."},
        ],
        **tools,
    )


def test_history_details() -> None:
    prompt = history_prompt(tools=[WEATHER])
    assert (
        '<|im_start|>assistant\nChecking.\n{"tool_calls": [{"name": "get_weather", "arguments": '
        '{"city": "Paris"}}, {"name": "get_time", "arguments": "not json"}]}<|im_end|>'
    ) in prompt
    results = [
        {"name": "get_weather", "content": "a"},
        {"name": "clock", "content": "b"},
        {"name": "", "content": "c"},
    ]
    user = f"<|im_start|>user\n{json.dumps({'tool_results': results})}<|im_end|>\n"
    assert user + "<|im_start|>assistant\nDone.<|im_end|>" in prompt


@pytest.mark.parametrize("tools", [{}, {"tools": [WEATHER], "tool_choice": "none"}])
def test_without_tools_the_history_is_told_in_words(tools: dict[str, Any]) -> None:
    prompt = history_prompt(**tools)
    assert "# Tools" not in prompt and "tool_calls" not in prompt
    assert (
        '<|im_start|>assistant\nChecking.\nI called get_weather with {"city": "Paris"}; '
        "get_time with not json.<|im_end|>\n"
        "<|im_start|>user\nResults:\n- get_weather: a\n- clock: b\n- tool: c<|im_end|>\n"
    ) in prompt
    one = render_chat(SMOLLM2, TOOL_TURNS)
    assert one.endswith(
        '<|im_start|>assistant\nI called get_weather with {"city": "Paris"}.<|im_end|>\n'
        "<|im_start|>user\nResult: sunny<|im_end|>\n<|im_start|>assistant\n"
    )


def test_a_template_that_knows_tools_renders_them_itself() -> None:
    assert template_uses_tools(NATIVE)
    prompt = render_chat(NATIVE, TOOL_TURNS, tools=[WEATHER, TIME], tool_choice="auto")
    assert prompt == (
        '<tools>get_weather:{"type": "object", "properties": {"city": {"type": "string"}}, '
        '"required": ["city"]};get_time:{"type": "object", "properties": {}, '
        '"additionalProperties": false};</tools>\n'
        # the reply is constrained to the generic format: the system message says so
        '[system]Reply with one JSON object and nothing else: {"tool_calls": [{"name": '
        '"<tool name>", "arguments": {<arguments>}}]} to call tools, or {"response": '
        '"<your reply>"} to reply to the user directly.\n'
        "[user]Weather in Paris?\n"
        '[assistant]<call>get_weather{"city": "Paris"}</call>\n'
        "[tool]<result id=call_1>sunny</result>\n"
        "[assistant]"
    )
    assert render_chat(NATIVE, [USER], tools=[WEATHER], tool_choice="none") == (
        "[user]Weather in Paris?\n[assistant]"
    )


def test_request_models_render_like_dicts() -> None:
    request = ChatCompletionRequest.model_validate(
        {"messages": TOOL_TURNS, "tools": [WEATHER], "tool_choice": "required"}
    )
    assert render_chat(
        SMOLLM2, request.messages, tools=request.tools, tool_choice=request.tool_choice
    ) == render_chat(SMOLLM2, TOOL_TURNS, tools=[WEATHER], tool_choice="required")


def test_allowed_tools_narrow_the_list() -> None:
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "required",
            "tools": [{"type": "function", "function": {"name": "get_time"}}],
        },
    }
    spec = active_tools([WEATHER, TIME], choice)
    assert spec is not None and spec.mode == "required"
    assert [t["name"] for t in spec.tools] == ["get_time"]
    assert (
        active_tools([WEATHER], {**choice, "allowed_tools": {"mode": "auto", "tools": []}}) is None
    )
    assert active_tools([WEATHER], {"type": "function", "function": {"name": "nope"}}) is None
    odd = active_tools(
        [WEATHER, "junk", {"type": "function", "function": {"x": 1}}], {"type": "mcp"}
    )
    assert odd is not None and odd.mode == "auto" and len(odd.tools) == 1 and odd.named is None


# --- counting ---------------------------------------------------------------------------


def test_count_chat_counts_the_rendered_tools_exactly() -> None:
    tok = toy_tokenizer(chat_template=SMOLLM2)
    with_tools = tok.count_chat(TOOL_TURNS, tools=[WEATHER])
    assert with_tools == len(tok.encode(tok.render_chat(TOOL_TURNS, tools=[WEATHER])))
    assert tok.exact and with_tools > tok.count_chat(TOOL_TURNS) > tok.count_chat([USER])
    assert tok.count_chat(TOOL_TURNS, tools=[WEATHER], tool_choice="none") == tok.count_chat(
        TOOL_TURNS
    )


def test_hosted_counts_with_tools_are_estimates() -> None:
    tok = hosted_tokenizer("gpt-4-0613")
    assert isinstance(tok, OpenAITokenizer) and not tok.exact
    plain = tok.count_chat([USER])
    assert tok.count_chat([USER], tools=[WEATHER]) > plain
    assert tok.count_chat(TOOL_TURNS) > plain
    estimate = ByteEstimateTokenizer(model="x")
    assert estimate.count_chat([USER], tools=[WEATHER]) > estimate.count_chat([USER])
    assert not estimate.exact


# --- the reply ---------------------------------------------------------------------------


def test_the_reply_schema_accepts_exactly_the_format() -> None:
    spec = active_tools([WEATHER, TIME])
    assert spec is not None
    schema = tool_reply_schema(spec)
    good = [
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
        {
            "tool_calls": [
                {"name": "get_time", "arguments": {}},
                {"name": "get_time", "arguments": {}},
            ]
        },
        {"response": "Hello"},
    ]
    bad = [
        {"tool_calls": []},
        {"tool_calls": [{"name": "get_weather", "arguments": {}}]},
        {"tool_calls": [{"name": "teleport", "arguments": {}}]},
        {"response": 5},
        {"response": "x", "tool_calls": []},
        "just text",
    ]
    for reply in good:
        jsonschema.validate(reply, schema)
    for reply in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(reply, schema)
    one = active_tools([WEATHER], "required", parallel_tool_calls=False)
    assert one is not None
    required = tool_reply_schema(one)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"response": "Hello"}, required)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tool_calls": [good[0]["tool_calls"][0]] * 2}, required)


def test_the_reply_schema_moves_each_tools_defs_to_the_top() -> None:
    def tool(name: str, inner: str) -> dict[str, Any]:
        parameters = {
            "type": "object",
            "properties": {"p": {"$ref": "#/$defs/P"}},
            "required": ["p"],
            "$defs": {
                "P": {
                    "type": "object",
                    "properties": {inner: {"type": "integer"}},
                    "required": [inner],
                }
            },
        }
        return {"type": "function", "function": {"name": name, "parameters": parameters}}

    spec = active_tools([tool("a", "x"), tool("b", "y")])
    assert spec is not None
    schema = tool_reply_schema(spec)
    assert sorted(schema["$defs"]) == ["tool0", "tool1"]  # each tool's own $defs inside
    jsonschema.validate({"tool_calls": [{"name": "b", "arguments": {"p": {"y": 1}}}]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tool_calls": [{"name": "b", "arguments": {"p": {"x": 1}}}]}, schema)


def test_tools_without_parameters_take_none_and_strict_tools_are_closed() -> None:
    loose = {"type": "object", "properties": {"a": {"type": "object"}}}
    strict = {"type": "function", "function": {"name": "s", "parameters": loose, "strict": True}}
    spec = active_tools([TIME, strict])
    assert spec is not None
    schema = tool_reply_schema(spec)
    jsonschema.validate({"tool_calls": [{"name": "get_time", "arguments": {}}]}, schema)
    for arguments in [{"x": 1}, {"a": {"extra": 1}}]:
        for name in ["get_time", "s"]:
            with pytest.raises(jsonschema.ValidationError):
                call = {"name": name, "arguments": arguments}
                jsonschema.validate({"tool_calls": [call]}, schema)


def test_a_named_tool_gets_exactly_one_call() -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    spec = active_tools([WEATHER, TIME], choice)
    assert spec is not None and spec.named == "get_time" and not spec.parallel
    schema = tool_reply_schema(spec)
    call = {"name": "get_time", "arguments": {}}
    jsonschema.validate({"tool_calls": [call]}, schema)
    for bad in [{"tool_calls": [call, call]}, {"response": "hi"}]:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"tool_calls": [{"name": "get_weather", "arguments": {"city": "x"}}]}, schema
        )


def test_a_response_schema_shapes_the_auto_reply() -> None:
    spec = active_tools([WEATHER])
    assert spec is not None
    answer = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    schema = tool_reply_schema(spec, response_schema=answer)
    jsonschema.validate({"response": {"n": 1}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"response": "text"}, schema)
