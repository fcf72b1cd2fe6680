"""Tool calls on the real default model, through the official ``openai`` client and this
SDK, sync and async (issue 10): forced calls valid for their tool, pydantic tools parsed, a
streamed call equal to the reply, a tool-result turn answered, ``run_tools``, and local
token counts of chats with tools equal to the server's.

The server is shared with ``test_structured_outputs.py`` (``default_server``); the requests
of a test go out together and greedy decoding gives every client the same reply.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import jsonschema
import openai
import pytest
from kit.four_clients import KINDS, Call, FourClients, message_fields, stream_final
from pydantic import BaseModel

import sdk

pytestmark = pytest.mark.e2e


class WeatherArgs(BaseModel):
    city: str
    unit: Literal["celsius", "fahrenheit"]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two numbers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
    },
}
PARAMETERS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, ADD)}
ASK_WEATHER = [{"role": "user", "content": "What is the weather like in Paris today?"}]
TOOL_TURNS = [
    {"role": "user", "content": "What is 12 times 7?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
     "function": {"name": "multiply", "arguments": '{"a": 12, "b": 7}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "84"},
]  # fmt: skip
MULTIPLY = {
    "type": "function",
    "function": {
        "name": "multiply",
        "description": "Multiply two numbers.",
        "parameters": PARAMETERS["add"],
    },
}


@pytest.mark.parametrize(
    "tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
async def test_forced_tool_calls_have_arguments_valid_for_the_tool(
    clients: FourClients, default_model_id: str, tool_choice: Any
) -> None:
    replies = await clients.each(
        lambda c: c.chat.completions.create(
            model=default_model_id,
            messages=ASK_WEATHER,
            tools=[WEATHER, ADD],
            tool_choice=tool_choice,
            max_tokens=100,
            temperature=0,
        )
    )
    for kind, reply in replies.items():
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls", kind
        assert choice.message.content is None and choice.message.tool_calls
        for call in choice.message.tool_calls:
            assert call.id.startswith("call_") and call.type == "function"
            jsonschema.validate(json.loads(call.function.arguments), PARAMETERS[call.function.name])
        if isinstance(tool_choice, dict):
            assert [c.function.name for c in choice.message.tool_calls] == ["get_weather"]
    assert len({json.dumps(message_fields(r.choices[0].message)) for r in replies.values()}) == 1


async def test_pydantic_tools_come_back_with_parsed_arguments(
    clients: FourClients, default_model_id: str
) -> None:
    def parse(kind: str) -> Call:
        make_tool = (
            openai.pydantic_function_tool
            if kind.startswith("openai")
            else sdk.pydantic_function_tool
        )
        tool = make_tool(WeatherArgs, name="get_weather", description="The weather in a city.")
        return lambda c: c.chat.completions.parse(
            model=default_model_id, messages=ASK_WEATHER, tools=[tool], tool_choice="required",
            max_tokens=100, temperature=0,
        )  # fmt: skip

    replies = await asyncio.gather(*(clients.run(kind, parse(kind)) for kind in KINDS))
    for reply in replies:
        (call,) = reply.choices[0].message.tool_calls
        assert isinstance(call.function.parsed_arguments, WeatherArgs)
        assert call.function.parsed_arguments.city == "Paris"


async def test_a_streamed_tool_call_adds_up_to_the_reply(
    clients: FourClients, default_model_id: str
) -> None:
    kwargs: dict[str, Any] = {
        "model": default_model_id,
        "messages": ASK_WEATHER,
        "tools": [WEATHER, ADD],
        "tool_choice": "required",
        "max_tokens": 100,
        "temperature": 0,
    }
    whole = await clients.run("openai-async", lambda c: c.chat.completions.create(**kwargs))
    finals = await asyncio.gather(
        *(clients.run(kind, stream_final(kind, **kwargs)) for kind in KINDS)
    )
    expected = message_fields(whole.choices[0].message)
    assert expected["calls"]
    for kind, final in zip(KINDS, finals, strict=True):
        assert message_fields(final.choices[0].message) == expected, kind
        assert final.choices[0].finish_reason == "tool_calls", kind


async def test_a_conversation_with_a_tool_result_is_answered(
    clients: FourClients, default_model_id: str
) -> None:
    def ask(tool_choice: str) -> Call:
        return lambda c: c.chat.completions.create(
            model=default_model_id, messages=TOOL_TURNS, tools=[MULTIPLY], tool_choice=tool_choice,
            max_tokens=60, temperature=0,
        )  # fmt: skip

    for kind, reply in (await clients.each(ask("auto"))).items():
        message = reply.choices[0].message
        assert reply.choices[0].finish_reason in ("stop", "tool_calls"), kind
        for call in message.tool_calls or []:  # the model may call again: validly
            jsonschema.validate(json.loads(call.function.arguments), PARAMETERS["add"])
        assert message.tool_calls or message.content
    # "none": an answer in words from the result (the tool section is not rendered)
    for kind, reply in (await clients.each(ask("none"))).items():
        message = reply.choices[0].message
        assert reply.choices[0].finish_reason == "stop" and not message.tool_calls, kind
        assert "84" in message.content and "tool_calls" not in message.content


Length = Literal["miles", "kilometers"]


def convert_length(value: float, from_unit: Length, to_unit: Length) -> str:
    """Convert a length from one unit to another."""
    factor = {"miles": 1609.344, "kilometers": 1000.0}
    return f"{value * factor[from_unit] / factor[to_unit]:.2f}"


@pytest.mark.parametrize("kind", ["sdk-sync", "sdk-async"])
async def test_run_tools_calls_the_function_and_answers(
    clients: FourClients, default_model_id: str, kind: str
) -> None:
    result = await clients.run(
        kind,
        lambda c: c.chat.completions.run_tools(
            model=default_model_id,
            messages=[{"role": "user", "content": "Convert 10 miles to km."}],
            tools=[convert_length],
            tool_choice="required",
            max_rounds=1,
            on_limit="answer",
            max_tokens=64,
            temperature=0,
        ),
    )
    assert result.rounds == 1
    assert [m["role"] for m in result.messages] == ["user", "assistant", "tool", "assistant"]
    assert result.messages[2]["content"] == "16.09"
    assert result.content and "16.09" in result.content


COUNTED = [
    {"messages": ASK_WEATHER, "tools": [WEATHER, ADD]},
    {"messages": ASK_WEATHER, "tools": [WEATHER, ADD], "tool_choice": "required",
     "parallel_tool_calls": False},
    {"messages": ASK_WEATHER, "tools": [WEATHER],
     "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    {"messages": TOOL_TURNS, "tools": [MULTIPLY]},
    {"messages": TOOL_TURNS, "tools": [MULTIPLY], "tool_choice": "none"},
    {"messages": TOOL_TURNS},
]  # fmt: skip


@pytest.mark.parametrize("kind", ["sdk-sync", "sdk-async"])
async def test_count_chat_with_tools_equals_the_servers_prompt_tokens(
    clients: FourClients, default_model_id: str, kind: str
) -> None:
    tokenizer = await clients.run(kind, lambda c: c.tokenizer(default_model_id))
    assert tokenizer.exact
    replies = await asyncio.gather(
        *(
            clients.run(kind, lambda c, body=body: c.chat.completions.create(
                model=default_model_id, max_tokens=1, temperature=0, **body))
            for body in COUNTED
        )
    )  # fmt: skip
    for body, reply in zip(COUNTED, replies, strict=True):
        options = {k: v for k, v in body.items() if k != "messages"}
        assert tokenizer.count_chat(body["messages"], **options) == reply.usage.prompt_tokens
