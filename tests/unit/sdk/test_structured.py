"""Structured outputs: parse() and stream(), sync and async; strict schemas; typed errors."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Annotated, Any, Literal

import httpx
import pydantic
import pytest
from kit.clients import MESSAGES, Api
from kit.hosted import sse_body, stream_of
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

import sdk
from sdk._protocol.strict_schema import make_strict, to_strict_json_schema
from sdk.tools import pydantic_function_tool


class Unit(enum.Enum):
    C = "C"
    F = "F"


class Place(pydantic.BaseModel):
    """A place on Earth."""

    city: str
    country: str | None = None


class Forecast(pydantic.BaseModel):
    place: Place
    home: Annotated[Place, pydantic.Field(description="Where the user lives")]
    unit: Unit = Unit.C
    days: list[int] = []
    kind: Literal["daily", "hourly"] = "daily"
    note: str | None = None


class GetWeather(pydantic.BaseModel):
    """Look up the weather."""

    city: str


FORECAST = {
    "place": {"city": "Paris", "country": "FR"},
    "home": {"city": "Oslo", "country": None},
    "unit": "F",
    "days": [1, 2],
    "kind": "hourly",
    "note": None,
}


def body(content: str | None = None, finish: str = "stop", **message: Any) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def server(reply: dict[str, Any], seen: list[dict[str, Any]], stream: bool = False) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        if stream:
            content = sse_body(stream_of(reply))
            return httpx.Response(
                200, content=content, headers={"content-type": "text/event-stream"}
            )
        return httpx.Response(200, json=reply)

    return handler


def parse(api: Api, reply: dict[str, Any], **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    kwargs.setdefault("messages", MESSAGES)
    result = api.run(
        lambda c: c.chat.completions.parse(model="m", **kwargs), api.client(server(reply, seen))
    )
    return result, seen[0]


def test_parse_sends_a_strict_schema_and_returns_the_model(api: Api) -> None:
    completion, sent = parse(api, body(json.dumps(FORECAST)), response_format=Forecast)
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "Forecast",
            "schema": to_strict_json_schema(Forecast),
            "strict": True,
        },
    }
    parsed = completion.choices[0].message.parsed
    assert parsed == Forecast.model_validate(FORECAST) and parsed.unit is Unit.F
    assert isinstance(completion, sdk.types.ParsedChatCompletion)
    assert completion.response_info.status_code == 200
    assert completion.choices[0].message.content == json.dumps(FORECAST)


def test_strict_schema_follows_openai_rules() -> None:
    schema = to_strict_json_schema(Forecast)
    place = schema["$defs"]["Place"]
    assert place["additionalProperties"] is False and place["required"] == ["city", "country"]
    assert schema["required"] == list(Forecast.model_fields)
    assert "default" not in json.dumps(schema)  # strict mode rejects defaults (#4390)
    # a $ref with a sibling description is inlined, a bare $ref kept
    assert schema["properties"]["home"]["description"] == "Where the user lives"
    assert schema["properties"]["home"]["additionalProperties"] is False
    assert schema["properties"]["place"] == {"$ref": "#/$defs/Place"}


def test_strict_schema_matches_openai_where_openai_is_right() -> None:
    from openai.lib._pydantic import to_strict_json_schema as openai_strict

    class Plain(pydantic.BaseModel):
        name: str
        tags: list[str]
        place: Place
        maybe: Place | None

    assert to_strict_json_schema(Plain) == openai_strict(Plain)
    # openai keeps non-null defaults, which the API then rejects; we drop them
    theirs = openai_strict(Forecast)
    assert theirs["properties"]["unit"]["default"] == "C"
    assert "default" not in to_strict_json_schema(Forecast)["properties"]["unit"]


def test_strict_schema_unions_and_all_of() -> None:
    class Cat(pydantic.BaseModel):
        kind: Literal["cat"]
        lives: int

    class Dog(pydantic.BaseModel):
        kind: Literal["dog"]

    class Pet(pydantic.BaseModel):
        pet: Cat | Dog = pydantic.Field(discriminator="kind")

    pet = to_strict_json_schema(Pet)["properties"]["pet"]
    assert "oneOf" not in pet and "discriminator" not in pet
    assert [b["$ref"] for b in pet["anyOf"]] == ["#/$defs/Cat", "#/$defs/Dog"]
    merged = make_strict(
        {"type": "object", "properties": {"a": {"allOf": [{"type": "string"}], "title": "A"}}}
    )
    assert merged["properties"]["a"] == {"type": "string", "title": "A"}
    both = make_strict({"allOf": [{"type": "object"}, {"properties": {"x": {"default": 1}}}]})
    assert both["allOf"] == [
        {"type": "object", "additionalProperties": False},
        {"properties": {"x": {}}, "required": ["x"]},
    ]
    tuples = make_strict({"type": "array", "prefixItems": [{"type": "object"}]})
    assert tuples["prefixItems"] == [{"type": "object", "additionalProperties": False}]
    legacy = make_strict({"definitions": {"D": {"type": "object", "properties": {}}}})
    assert legacy["definitions"]["D"]["additionalProperties"] is False


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"properties": {"a": {"$ref": "https://x/y", "title": "a"}}}, "only local refs"),
        ({"properties": {"a": {"$ref": "#/$defs/missing", "title": "a"}}}, "cannot resolve"),
    ],
)
def test_unresolvable_refs_are_typed_errors(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(sdk.InvalidRequestParamsError, match=message):
        make_strict(schema)


def test_dataclasses_and_typeddicts_work_too(api: Api) -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    class Size(TypedDict):
        w: int

    completion, sent = parse(api, body('{"x": 1, "y": 2}'), response_format=Point)
    assert completion.choices[0].message.parsed == Point(1, 2)
    assert sent["response_format"]["json_schema"]["name"] == "Point"
    completion, _ = parse(api, body('{"w": 3}'), response_format=Size)
    assert completion.choices[0].message.parsed == {"w": 3}


class Opaque:
    """A class pydantic cannot describe."""


@pytest.mark.parametrize("bad", [list[int], int, object, Opaque])
def test_a_type_that_is_not_an_object_fails_before_sending(api: Api, bad: Any) -> None:
    seen: list[dict[str, Any]] = []
    with pytest.raises(sdk.InvalidRequestParamsError):
        api.run(
            lambda c: c.chat.completions.parse(messages=MESSAGES, response_format=bad),
            api.client(server(body("1"), seen)),
        )
    assert seen == []


def test_a_refusal_sets_refusal_and_leaves_parsed_empty(api: Api) -> None:
    completion, _ = parse(api, body(None, refusal="I can't."), response_format=Forecast)
    message = completion.choices[0].message
    assert (message.refusal, message.parsed) == ("I can't.", None)


@pytest.mark.parametrize(
    ("finish", "error"),
    [
        ("length", sdk.LengthFinishReasonError),
        ("content_filter", sdk.ContentFilterFinishReasonError),
    ],
)
def test_cut_or_filtered_replies_raise_typed_errors(api: Api, finish: str, error: type) -> None:
    with pytest.raises(error) as info:
        parse(api, body('{"place": {"ci', finish), response_format=Forecast)
    assert isinstance(info.value, sdk.StructuredOutputError)
    assert info.value.completion.choices[0].finish_reason == finish


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"place": {"city": "Paris"', "not valid JSON"),
        ("Sure! Here is the JSON:", "not valid JSON"),
        ('{"place": {"city": 5}}', "place.city"),
    ],
)
def test_a_reply_that_is_not_the_type_is_a_typed_error_with_the_raw_text(
    api: Api, content: str, needle: str
) -> None:
    with pytest.raises(sdk.OutputParseError) as info:
        parse(api, body(content), response_format=Forecast)
    error = info.value
    assert isinstance(error, ValueError) and not isinstance(error, json.JSONDecodeError)
    assert error.text == content and needle in str(error) and "Forecast" in str(error)


def tool_calls(*calls: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}}
        for i, (name, args) in enumerate(calls)
    ] + [{"id": "call_x", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}]


def test_tool_calls_come_back_with_parsed_arguments(api: Api) -> None:
    strict_dict = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object"}, "strict": True},
    }
    loose = {"type": "function", "function": {"name": "loose", "parameters": {}}}
    calls = tool_calls(
        ("GetWeather", '{"city": "Paris"}'), ("lookup", '{"q": 1}'), ("loose", "{"), ("other", "{}")
    )
    completion, sent = parse(
        api,
        body(None, "tool_calls", tool_calls=calls),
        tools=[pydantic_function_tool(GetWeather), strict_dict, loose],
    )
    assert sent["tools"][0] == {
        "type": "function",
        "function": {
            "name": "GetWeather",
            "description": "Look up the weather.",
            "parameters": to_strict_json_schema(GetWeather),
            "strict": True,
        },
    }
    message = completion.choices[0].message
    parsed = [c.function.parsed_arguments for c in message.tool_calls if c.type == "function"]
    assert parsed == [GetWeather(city="Paris"), {"q": 1}, None, None]
    assert message.parsed is None
    assert message.tool_calls[-1].custom.input == "SELECT 1"
    # sent back as history, parsed_arguments stays local
    assert "parsed_arguments" not in json.dumps(message.to_param())


@pytest.mark.parametrize("arguments", ['{"city": 1}', '{"city": "Par'])
def test_bad_arguments_of_a_parsed_tool_are_a_typed_error(api: Api, arguments: str) -> None:
    strict = {"type": "function", "function": {"name": "lookup", "strict": True}}
    for tool, name in ((pydantic_function_tool(GetWeather, name="w"), "w"), (strict, "lookup")):
        if name == "lookup" and arguments.startswith('{"city": 1'):
            continue  # a plain strict tool only checks that the arguments are JSON
        calls = tool_calls((name, arguments))
        with pytest.raises(sdk.OutputParseError) as info:
            parse(api, body(None, "tool_calls", tool_calls=calls), tools=[tool])
        assert info.value.text == arguments and repr(name) in str(info.value)


def test_pydantic_function_tool_options() -> None:
    class NoDoc(pydantic.BaseModel):
        x: int

    tool = pydantic_function_tool(NoDoc, name="n", description="Does n.")
    assert tool["function"]["name"] == "n" and tool["function"]["description"] == "Does n."
    assert "description" not in pydantic_function_tool(NoDoc)["function"]


# --- stream() ---------------------------------------------------------------------------


def run_stream(api: Api, reply: dict[str, Any], **kwargs: Any) -> tuple[list[str], Any]:
    """(the text deltas, the final parsed completion) of ``chat.completions.stream(...)``."""
    seen: list[dict[str, Any]] = []
    client = api.client(server(reply, seen, stream=True))
    manager = client.chat.completions.stream(model="m", messages=MESSAGES, **kwargs)
    if not api.is_async:
        with manager as stream:
            return list(stream.text_stream), stream.get_final_completion()

    async def consume() -> tuple[list[str], Any]:
        async with manager as stream:
            texts = [text async for text in stream.text_stream]
            return texts, await stream.get_final_completion()

    return api.run(lambda _: consume(), client)  # type: ignore[no-any-return]


def test_stream_yields_text_then_the_parsed_object(api: Api) -> None:
    texts, final = run_stream(api, body(json.dumps(FORECAST)), response_format=Forecast)
    assert len(texts) > 1 and "".join(texts) == json.dumps(FORECAST)
    assert final.choices[0].message.parsed == Forecast.model_validate(FORECAST)


def test_stream_iterates_chunks_and_raises_the_same_errors(api: Api) -> None:
    with pytest.raises(sdk.LengthFinishReasonError):
        run_stream(api, body('{"pla', "length"), response_format=Forecast)
    seen: list[dict[str, Any]] = []
    reply = body(json.dumps(FORECAST))
    client = api.client(server(reply, seen, stream=True))
    manager = client.chat.completions.stream(model="m", messages=MESSAGES)
    if api.is_async:

        async def chunks() -> list[Any]:
            async with manager as stream:
                return [chunk async for chunk in stream]

        got = api.run(lambda _: chunks(), client)
    else:
        with manager as stream:
            got = list(stream)
    assert got[0].choices[0].delta.role == "assistant" and seen[0]["stream"] is True
    assert "response_format" not in seen[0]


def test_a_manager_left_before_entering_opens_nothing(api: Api) -> None:
    seen: list[dict[str, Any]] = []
    client = api.client(server(body("{}"), seen, stream=True))
    manager = client.chat.completions.stream(model="m", messages=MESSAGES)
    if api.is_async:
        api.run(lambda _: manager.__aexit__(None, None, None), client)
    else:
        manager.__exit__(None, None, None)
    assert seen == []
