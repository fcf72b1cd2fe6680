"""Structured outputs on the real default model, through the official ``openai`` client and
this SDK, sync and async (issue 10): ``parse()`` with ten pydantic models, JSON mode, and the
400s for what the server cannot serve.

The server is shared with ``test_tool_calls.py`` (``default_server``). Requests of a test go
out together and are batched; greedy decoding gives every client the very same reply, which
is checked too. The models bound their numbers and lists (``le=``, ``max_length=``): under a
grammar a 135M model otherwise happily writes digits or list items until ``max_tokens``.
"""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from typing import Any, Literal

import httpx
import openai
import pytest
from kit.four_clients import KINDS, FourClients
from kit.live_server import LiveServer
from pydantic import BaseModel, Field

import sdk

pytestmark = pytest.mark.e2e


class Color(StrEnum):
    red = "red"
    green = "green"
    blue = "blue"


class City(BaseModel):
    name: str
    country: str
    population: int = Field(ge=0, le=100_000_000)


class Address(BaseModel):
    street: str
    city: str
    zip_code: str


class Person(BaseModel):  # a nested object
    name: str
    age: int
    address: Address


class Favorite(BaseModel):  # an enum
    person: str
    color: Color


class Recipe(BaseModel):  # a list
    title: str
    ingredients: list[str] = Field(min_length=1, max_length=6)
    minutes: int = Field(ge=1, le=600)


class Sentiment(BaseModel):  # a literal, a float
    label: Literal["positive", "negative", "neutral"]
    confidence: float


class Book(BaseModel):  # an optional field
    title: str
    author: str
    year: int | None


class Point(BaseModel):
    x: float
    y: float


class Shape(BaseModel):  # a list of nested objects
    kind: Literal["triangle", "square"]
    corners: list[Point] = Field(max_length=4)


class Answer(BaseModel):  # a boolean
    question: str
    answer: bool
    reason: str


class Planet(BaseModel):
    name: str
    moons: int
    has_rings: bool
    order_from_sun: int


CASES: list[tuple[type[BaseModel], str]] = [
    (City, "Describe Paris as a city."),
    (Person, "Invent a person who lives in London, with their address."),
    (Favorite, "Alice loves the color of the sky. What is her favorite color?"),
    (Recipe, "Give me a simple pancake recipe."),
    (Sentiment, "Classify the sentiment: 'I love this phone, it is great!'"),
    (Book, "Tell me about the book 1984."),
    (Point, "Give the point halfway between (0, 0) and (4, 2)."),
    (Shape, "Describe a square with side 1 starting at the origin."),
    (Answer, "Is water wet?"),
    (Planet, "Describe the planet Saturn."),
]


ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]
WEATHER = {"type": "function", "function": {"name": "get_weather"}}


async def test_parse_gives_valid_instances_of_ten_models(
    clients: FourClients, default_model_id: str
) -> None:
    async def one(kind: str, model: type[BaseModel], question: str) -> Any:
        return await clients.run(
            kind,
            lambda c: c.chat.completions.parse(
                model=default_model_id,
                messages=[{"role": "user", "content": question}],
                response_format=model,
                max_tokens=200,
                temperature=0,
            ),
        )

    calls = [(kind, model, q) for kind in KINDS for model, q in CASES]
    replies = await asyncio.gather(*(one(*call) for call in calls))
    contents: dict[str, set[str]] = {}
    for (kind, model, _), reply in zip(calls, replies, strict=True):
        choice = reply.choices[0]
        assert choice.finish_reason == "stop", (kind, model.__name__, choice.message.content)
        parsed = choice.message.parsed
        assert isinstance(parsed, model), (kind, model.__name__)
        assert model.model_validate_json(choice.message.content) == parsed
        contents.setdefault(model.__name__, set()).add(choice.message.content)
    # greedy and batch-invariant: every client got the very same JSON
    assert all(len(texts) == 1 for texts in contents.values()), contents


async def test_json_object_mode_returns_a_json_object(
    clients: FourClients, default_model_id: str
) -> None:
    question = "Give me a JSON object with the name and age of a person."
    replies = await clients.each(
        lambda c: c.chat.completions.create(
            model=default_model_id,
            messages=[{"role": "user", "content": question}],
            response_format={"type": "json_object"},
            max_tokens=150,
            temperature=0,
        )
    )
    for reply in replies.values():
        assert reply.choices[0].finish_reason == "stop"
        assert isinstance(json.loads(reply.choices[0].message.content), dict)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {
      "type": "objekt"}}}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {
      "type": "array", "uniqueItems": True}}}}, "response_format"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]},
     "tools[0].function.name"),
    ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]},
     "messages[0].content[1]"),
]  # fmt: skip


async def test_bad_input_is_a_400_naming_the_field_and_the_server_stays_healthy(
    default_server: LiveServer, default_model_id: str
) -> None:
    async with httpx.AsyncClient(base_url=default_server.base_url, timeout=120) as http:
        for body, param in BAD:
            r = await http.post(
                "/v1/chat/completions", json={"model": default_model_id, "messages": ASK, **body}
            )
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == param
            assert r.json()["error"]["type"] == "invalid_request_error"
        assert (await http.get("/health")).status_code == 200
        r = await http.post("/v1/chat/completions", json={"model": default_model_id,
                            "messages": ASK, "max_tokens": 4})  # fmt: skip
        assert r.status_code == 200
        card = (await http.get(f"/v1/models/{default_model_id}")).json()
    assert card["capabilities"]["tools"] and card["capabilities"]["tool_format"] == "generic"
    assert card["capabilities"]["input_modalities"] == ["text"]
    with pytest.raises(openai.BadRequestError, match="text only"):
        openai.OpenAI(
            base_url=f"{default_server.base_url}/v1", api_key="x"
        ).chat.completions.create(model=default_model_id, messages=BAD[-1][0]["messages"])
    # the SDK sends the image part as given; the server says why it cannot serve it
    image = BAD[-1][0]["messages"]
    with (
        sdk.Client(base_url=f"{default_server.base_url}/v1") as client,
        pytest.raises(sdk.BadRequestError, match="text only"),
    ):
        client.chat.completions.create(model=default_model_id, messages=image)
