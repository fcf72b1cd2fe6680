"""Tools from Python functions, and the tool loop (sync and async) against a scripted server."""

from __future__ import annotations

import asyncio
import enum
import json
from typing import Annotated, Any, Literal

import httpx
import pydantic
import pytest
from kit.clients import Api

import sdk
from sdk.tools import FunctionTool, function_tool, tool_result_text


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


class Place(pydantic.BaseModel):
    city: str


def get_weather(
    city: str,
    unit: Unit = Unit.C,
    days: Annotated[int, pydantic.Field(ge=1, le=7, description="How many days")] = 1,
    *,
    detail: Literal["short", "long"] = "short",
) -> dict[str, Any]:
    """The weather forecast for a city.

    Longer explanation that is not part of the description.

    Args:
        city: The city's name, e.g. "Paris".
        unit (Unit): Temperature unit.

    Returns:
        The forecast.
    """
    return {"city": city, "unit": unit.value, "days": days, "detail": detail}


def test_function_tool_describes_a_typed_function() -> None:
    tool = function_tool(get_weather)
    function = tool.param["function"]
    assert (function["name"], function["description"]) == (
        "get_weather",
        "The weather forecast for a city.",
    )
    params = function["parameters"]
    assert params["required"] == ["city"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["city"] == {
        "type": "string",
        "title": "City",
        "description": 'The city\'s name, e.g. "Paris".',
    }
    assert props["unit"]["description"] == "Temperature unit."
    assert props["days"]["minimum"] == 1 and props["days"]["description"] == "How many days"
    assert props["detail"]["enum"] == ["short", "long"]
    assert params["$defs"]["Unit"]["enum"] == ["celsius", "fahrenheit"]
    assert "strict" not in function


def test_strict_function_tools_require_everything() -> None:
    tool = function_tool(get_weather, strict=True, name="weather", description="Forecast.")
    function = tool.param["function"]
    assert function["strict"] is True and function["name"] == "weather"
    assert function["description"] == "Forecast."
    assert function["parameters"]["required"] == ["city", "unit", "days", "detail"]
    assert "default" not in json.dumps(function["parameters"])


def test_arguments_are_validated_with_the_signature() -> None:
    tool = function_tool(get_weather)
    assert tool.validate('{"city": "Oslo", "unit": "fahrenheit"}') == {
        "city": "Oslo",
        "unit": Unit.F,
        "days": 1,
        "detail": "short",
    }
    for bad in ['{"unit": "C"}', '{"city": "x", "days": 9}', '{"city": "x", "mood": 1}', "{"]:
        with pytest.raises(pydantic.ValidationError):
            tool.validate(bad)


def test_functions_without_parameters_or_docstrings() -> None:
    def now() -> str:
        return "noon"

    tool = function_tool(now)
    assert tool.validate("") == {} and tool.validate("  {} ") == {}
    assert tool.description is None and "description" not in tool.param["function"]

    def untyped(x, y=2):  # type: ignore[no-untyped-def]
        """
        Args:
            x: anything
        """

    schema = function_tool(untyped).parameters
    assert schema["required"] == ["x"] and schema["properties"]["x"]["description"] == "anything"
    assert function_tool(untyped).description is None


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda x: x, "not a valid tool name"),
        (lambda *args: None, "not a valid tool name"),
    ],
)
def test_functions_that_cannot_be_tools(fn: Any, message: str) -> None:
    with pytest.raises(sdk.InvalidRequestParamsError, match=message):
        function_tool(fn)


@pytest.mark.parametrize("signature", ["*args", "**kwargs", "a, /"])
def test_parameters_that_cannot_be_passed_by_keyword(signature: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"def f({signature}): pass", namespace)
    with pytest.raises(sdk.InvalidRequestParamsError, match="cannot be passed by keyword"):
        function_tool(namespace["f"])


def test_tool_result_text() -> None:
    assert tool_result_text("plain") == "plain"
    assert tool_result_text({"a": [1, 2]}) == '{"a":[1,2]}'
    assert tool_result_text(Place(city="Oslo")) == '{"city":"Oslo"}'
    assert tool_result_text(None) == "null"
    assert tool_result_text(object).startswith("<class")  # not JSON: its str()


# --- the loop ----------------------------------------------------------------------------


def completion(
    content: str | None = None, calls: list[tuple[str, str]] | None = None, **message: Any
) -> dict[str, Any]:
    tool_calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
        for i, (n, a) in enumerate(calls or [])
    ]
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
    }


class Script:
    """A server that answers each chat request with the next scripted reply."""

    def __init__(self, *replies: dict[str, Any]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(json.loads(request.content))
        return httpx.Response(200, json=self.replies.pop(0))


def boom(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"exploded: {reason}")


USER = [{"role": "user", "content": "Weather in Paris and Oslo?"}]


def test_the_loop_runs_tools_and_reports_failures_to_the_model(api: Api) -> None:
    script = Script(
        completion(
            "Let me check.",
            [
                ("get_weather", '{"city": "Paris"}'),
                ("get_weather", '{"city": "Oslo", "days": 99}'),
                ("teleport", "{}"),
                ("boom", '{"reason": "x"}'),
            ],
        ),
        completion("Sunny in Paris."),
    )
    result = api.run(
        lambda c: c.chat.completions.run_tools(
            model="m",
            messages=USER,
            tools=[get_weather, function_tool(boom)],
            tool_choice="required",
            temperature=0,
        ),
        api.client(script),
    )
    assert result.content == "Sunny in Paris." and result.rounds == 1
    first, second = script.requests
    assert first["tool_choice"] == "required" and "tool_choice" not in second
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather", "boom"]
    assert first["temperature"] == 0 and first["messages"] == USER
    sent = second["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["content"] == "Let me check."
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_0", "call_1", "call_2", "call_3"]
    results = {m["tool_call_id"]: m["content"] for m in sent[2:]}
    assert json.loads(results["call_0"]) == {
        "city": "Paris",
        "unit": "celsius",
        "days": 1,
        "detail": "short",
    }
    assert results["call_1"].startswith("Error: invalid arguments for 'get_weather': days:")
    assert results["call_2"] == (
        "Error: there is no tool named 'teleport'. Available tools: boom, get_weather."
    )
    assert results["call_3"] == "Error: 'boom' failed: RuntimeError: exploded: x"
    assert result.messages == [*sent, {"role": "assistant", "content": "Sunny in Paris."}]


def test_async_tools_are_awaited_concurrently_by_the_async_loop() -> None:
    started: list[str] = []
    both_started = asyncio.Event()

    async def slow(name: str) -> str:
        started.append(name)
        if len(started) == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), 5)  # deadlocks if run one by one
        return name.upper()

    script = Script(
        completion(None, [("slow", '{"name": "a"}'), ("slow", '{"name": "b"}')]), completion("done")
    )
    api = Api(is_async=True)
    result = api.run(
        lambda c: c.chat.completions.run_tools(model="m", messages=USER, tools=[slow]),
        api.client(script),
    )
    assert result.content == "done"
    assert [m["content"] for m in script.requests[1]["messages"][2:]] == ["A", "B"]


def test_an_async_tool_in_the_sync_loop_is_an_error_result() -> None:
    async def later() -> str:
        return "never"

    script = Script(completion(None, [("later", "{}")]), completion("ok"))
    api = Api(is_async=False)
    api.run(
        lambda c: c.chat.completions.run_tools(model="m", messages=USER, tools=[later]),
        api.client(script),
    )
    reply = script.requests[1]["messages"][-1]["content"]
    assert reply == "Error: 'later' failed: TypeError: 'later' is async: run it with AsyncClient"


def test_the_loop_stops_after_max_rounds(api: Api) -> None:
    calling = completion(None, [("get_weather", '{"city": "Paris"}')])
    script = Script(calling, calling, calling)
    with pytest.raises(sdk.ToolLoopLimitError) as info:
        api.run(
            lambda c: c.chat.completions.run_tools(
                model="m", messages=USER, tools=[get_weather], max_rounds=2
            ),
            api.client(script),
        )
    error = info.value
    assert len(script.requests) == 3 and "after 2 rounds (get_weather)" in str(error)
    assert [m["role"] for m in error.messages] == ["user", *["assistant", "tool"] * 2, "assistant"]
    assert error.completion.choices[0].finish_reason == "tool_calls"


def test_on_limit_answer_asks_once_more_without_tools(api: Api) -> None:
    calling = completion(None, [("get_weather", '{"city": "Paris"}')])
    script = Script(calling, completion("Sunny in Paris."))
    result = api.run(
        lambda c: c.chat.completions.run_tools(
            model="m",
            messages=USER,
            tools=[get_weather],
            tool_choice="required",
            max_rounds=1,
            on_limit="answer",
        ),
        api.client(script),
    )
    assert result.content == "Sunny in Paris." and result.rounds == 1
    assert [r.get("tool_choice") for r in script.requests] == ["required", "none"]
    assert script.requests[1]["messages"][-1]["role"] == "tool"
    # a service that calls tools anyway under "none" still ends the loop
    with pytest.raises(sdk.ToolLoopLimitError):
        api.run(
            lambda c: c.chat.completions.run_tools(
                model="m", messages=USER, tools=[get_weather], max_rounds=0, on_limit="answer"
            ),
            api.client(Script(calling)),
        )


def test_custom_tool_calls_and_empty_replies(api: Api) -> None:
    custom = completion(None)
    custom["choices"][0]["message"]["tool_calls"] = [
        {"id": "c9", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}
    ]
    empty = {**completion("x"), "choices": []}
    script = Script(custom, empty)
    result = api.run(
        lambda c: c.chat.completions.run_tools(model="m", messages=USER, tools=[]),
        api.client(script),
    )
    assert result.content is None and result.rounds == 1
    assert script.requests[0]["tools"] == []
    assert script.requests[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "c9",
        "content": "Error: custom tool calls are not supported here; call a function.",
    }
    with pytest.raises(sdk.ToolLoopLimitError, match="sql"):
        api.run(
            lambda c: c.chat.completions.run_tools(
                model="m", messages=USER, tools=[], max_rounds=0
            ),
            api.client(Script(custom)),
        )


def test_an_api_error_ends_the_loop(api: Api) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "no tools here"}})

    with pytest.raises(sdk.BadRequestError, match="no tools here"):
        api.run(
            lambda c: c.chat.completions.run_tools(model="m", messages=USER, tools=[get_weather]),
            api.client(handler),
        )


def test_a_function_tool_object_is_used_as_given() -> None:
    tool = function_tool(get_weather, name="weather")
    assert isinstance(tool, FunctionTool)
    script = Script(completion(None, [("weather", '{"city": "Rome"}')]), completion("ok"))
    api = Api(is_async=False)
    api.run(
        lambda c: c.chat.completions.run_tools(model="m", messages=USER, tools=[tool]),
        api.client(script),
    )
    assert script.requests[0]["tools"][0]["function"]["name"] == "weather"
    assert json.loads(script.requests[1]["messages"][-1]["content"])["city"] == "Rome"
