"""The official ``openai`` package, sync and async, parses everything the server sends."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import openai
import pytest
from fastapi import FastAPI
from kit.fake_engine import FakeEngine
from starlette.testclient import TestClient

from server_ref.api import create_app

MESSAGES = [{"role": "user", "content": "Hi"}]
REPLY = "Hello there, world!"


class OpenAIClient:
    """One call surface over ``openai.OpenAI`` and ``openai.AsyncOpenAI`` so every test runs
    against both (streams are collected into lists)."""

    def __init__(self, mode: str, app: FastAPI, api_key: str = "sk-test") -> None:
        self.mode = mode
        base_url = "http://testserver/v1"
        if mode == "sync":
            self.client: Any = openai.OpenAI(
                base_url=base_url, api_key=api_key, max_retries=0, http_client=TestClient(app)
            )
        else:
            transport = httpx.ASGITransport(app=app)
            self.client = openai.AsyncOpenAI(
                base_url=base_url,
                api_key=api_key,
                max_retries=0,
                # openai>=3 annotates its own httpx fork; any httpx-compatible client works
                http_client=cast(Any, httpx.AsyncClient(transport=transport)),
            )

    async def call(self, path: str, *args: Any, **kwargs: Any) -> Any:
        target: Any = self.client
        for name in path.split("."):
            target = getattr(target, name)
        result = target(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        if kwargs.get("stream"):
            if isinstance(result, AsyncIterator):
                return [chunk async for chunk in result]
            return list(result)
        return result


@pytest.fixture(params=["sync", "async"])
def oai(request: pytest.FixtureRequest, app: FastAPI) -> OpenAIClient:
    return OpenAIClient(request.param, app)


async def test_models(oai: OpenAIClient) -> None:
    page = await oai.call("models.list")
    assert [m.id for m in page.data] == ["fake-model"]
    model = await oai.call("models.retrieve", "fake-model")
    assert model.id == "fake-model" and model.object == "model"


async def test_chat_completion_n2_logprobs(oai: OpenAIClient) -> None:
    resp = await oai.call(
        "chat.completions.create",
        model="fake-model",
        messages=MESSAGES,
        n=2,
        seed=5,
        logprobs=True,
        top_logprobs=2,
        max_completion_tokens=100,
        extra_body={"top_k": 5},
    )
    assert resp.id.startswith("chatcmpl-")
    assert resp.object == "chat.completion"
    assert [c.index for c in resp.choices] == [0, 1]
    assert [c.message.content for c in resp.choices] == [f"{REPLY} (seed 5)", f"{REPLY} (seed 6)"]
    assert all(c.finish_reason == "stop" for c in resp.choices)
    assert resp.choices[0].message.role == "assistant"
    content = resp.choices[0].logprobs.content
    assert "".join(t.token for t in content) == resp.choices[0].message.content
    assert [t.token for t in content[0].top_logprobs] == ["H", "A"]
    assert resp.usage.completion_tokens == sum(len(c.message.content) for c in resp.choices)
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


@pytest.mark.parametrize("include_usage", [False, True])
async def test_chat_stream(oai: OpenAIClient, include_usage: bool) -> None:
    chunks = await oai.call(
        "chat.completions.create",
        model="fake-model",
        messages=MESSAGES,
        n=2,
        stream=True,
        stream_options={"include_usage": include_usage},
        logprobs=True,
    )
    text = {0: "", 1: ""}
    finish = {}
    for chunk in chunks:
        assert chunk.object == "chat.completion.chunk"
        for choice in chunk.choices:
            text[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    assert text == {0: REPLY, 1: REPLY}
    assert finish == {0: "stop", 1: "stop"}
    assert chunks[0].choices[0].delta.role == "assistant"
    if include_usage:
        assert chunks[-1].choices == []
        assert chunks[-1].usage.completion_tokens == 2 * len(REPLY)
        assert all(c.usage is None for c in chunks[:-1])
    else:
        assert all(c.choices for c in chunks)


async def test_completion(oai: OpenAIClient) -> None:
    resp = await oai.call(
        "completions.create", model="fake-model", prompt=["a", "b"], max_tokens=5, logprobs=2
    )
    assert resp.object == "text_completion"
    assert [(c.index, c.text, c.finish_reason) for c in resp.choices] == [
        (0, "Hello", "length"),
        (1, "Hello", "length"),
    ]
    assert resp.choices[0].logprobs.tokens == list("Hello")
    assert resp.choices[0].logprobs.top_logprobs[0] == {"H": -0.25, "A": -2.65}
    assert resp.usage.prompt_tokens == 2


@pytest.mark.parametrize("include_usage", [False, True])
async def test_completion_stream(oai: OpenAIClient, include_usage: bool) -> None:
    chunks = await oai.call(
        "completions.create",
        model="fake-model",
        prompt="a",
        max_tokens=64,  # more than the reply, which the default of 16 would cut
        stream=True,
        stream_options={"include_usage": include_usage},
    )
    assert "".join(c.text for chunk in chunks for c in chunk.choices) == REPLY
    if include_usage:
        assert chunks[-1].usage.completion_tokens == len(REPLY)


async def test_errors_map_to_openai_exceptions(oai: OpenAIClient, engine: FakeEngine) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        await oai.call("chat.completions.create", model="fake-model", messages=MESSAGES,
                       max_tokens=10_000)  # fmt: skip
    assert bad.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as bad:
        await oai.call("chat.completions.create", model="fake-model", messages=MESSAGES,
                       temperature=5)  # fmt: skip
    assert "temperature" in bad.value.message
    with pytest.raises(openai.NotFoundError) as missing:
        await oai.call("chat.completions.create", model="gpt-4o", messages=MESSAGES)
    assert missing.value.code == "model_not_found"
    engine.queue_full = True
    with pytest.raises(openai.RateLimitError) as limited:
        await oai.call("completions.create", model="fake-model", prompt="a")
    assert limited.value.response.headers["retry-after"] == "3"


async def test_mid_stream_error_raises(oai: OpenAIClient, engine: FakeEngine) -> None:
    engine.error_after_steps = 2
    with pytest.raises(openai.APIError, match="internal error occurred while generating"):
        await oai.call("chat.completions.create", model="fake-model", messages=MESSAGES,
                       stream=True)  # fmt: skip


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_api_key(mode: str, engine: FakeEngine) -> None:
    app = create_app(engine, api_key="sk-right")
    with pytest.raises(openai.AuthenticationError):
        await OpenAIClient(mode, app, api_key="sk-wrong").call("models.list")
    page = await OpenAIClient(mode, app, api_key="sk-right").call("models.list")
    assert page.data[0].id == "fake-model"
