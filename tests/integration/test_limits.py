"""A guarded server: room for 2 running and 2 waiting requests (the rest get 429), and an API
key on the API routes. One process serves both concerns to save a start on a small machine."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from kit.live_clients import (
    KV_USAGE,
    RUNNING,
    WAITING,
    OpenAICalls,
    request_args,
    wait_for_metrics,
)
from kit.live_server import LiveServer, ServerFactory

IDLE = {RUNNING: 0.0, WAITING: 0.0, KV_USAGE: 0.0}
BUSY = {"max_tokens": 100, "temperature": 0, "ignore_eos": True}


API_KEY = "sk-integration-test"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def small_server(tiny_server_factory: ServerFactory) -> Iterator[LiveServer]:
    flags = ("--max-num-seqs", "2", "--max-queue", "2", "--api-key", API_KEY)
    with tiny_server_factory(*flags) as server:
        yield server


@pytest.fixture
async def http(small_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """A raw client that sends the key."""
    async with httpx.AsyncClient(
        base_url=small_server.base_url, headers=AUTH, timeout=60.0
    ) as client:
        yield client


# -- API key ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/metrics"])
async def test_ops_routes_need_no_key(small_server: LiveServer, path: str) -> None:
    async with httpx.AsyncClient(base_url=small_server.base_url) as anonymous:
        r = await anonymous.get(path)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": API_KEY}],
    ids=["missing", "wrong", "not-bearer"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/tokenize")],
)
async def test_api_routes_need_the_key(
    small_server: LiveServer, headers: dict[str, str], method: str, path: str
) -> None:
    async with httpx.AsyncClient(base_url=small_server.base_url, headers=headers) as client:
        r = await client.request(method, path, json={"prompt": "hi"})
    assert r.status_code == 401, r.text
    error = r.json()["error"]
    assert error["type"] == "authentication_error"
    assert error["code"] == "invalid_api_key"
    assert API_KEY not in r.text


async def test_key_opens_the_api(http: httpx.AsyncClient) -> None:
    r = await http.get("/v1/models")
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 2  # the chat and the embedding model


async def test_openai_client_with_wrong_key(small_server: LiveServer, mode: str) -> None:
    wrong = OpenAICalls(mode, small_server.base_url, api_key="sk-wrong")
    right = OpenAICalls(mode, small_server.base_url, api_key=API_KEY)
    try:
        with pytest.raises(openai.AuthenticationError) as info:
            await wrong.list_models()
        assert info.value.status_code == 401
        assert info.value.code == "invalid_api_key"
        model = (await right.list_models())[0]
        with pytest.raises(openai.AuthenticationError):
            await wrong.create("chat", **request_args("chat", model, "hi", max_tokens=2))
        result = await right.create("chat", **request_args("chat", model, "hi", max_tokens=2))
        assert result.usage.completion_tokens >= 1
    finally:
        await wrong.close()
        await right.close()


# -- overload -----------------------------------------------------------------------------


def chat_body(i: int, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"request {i}"}], **BUSY, **extra}


def assert_rate_limited(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) >= 1
    error = r.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"
    assert error["message"]


async def test_burst_gets_429_for_the_excess(http: httpx.AsyncClient) -> None:
    responses = await asyncio.wait_for(
        asyncio.gather(*(http.post("/v1/chat/completions", json=chat_body(i)) for i in range(12))),
        timeout=120,
    )
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 429}, statuses
    assert statuses.count(200) >= 2  # at least the two that ran at once
    for r in responses:
        if r.status_code == 429:
            assert_rate_limited(r)
        else:
            body = r.json()
            assert body["choices"][0]["finish_reason"] == "length"
            assert body["usage"]["completion_tokens"] == 100

    await wait_for_metrics(http, IDLE, within=2.0)
    assert (await http.get("/health")).status_code == 200
    r = await http.post("/v1/chat/completions", json=chat_body(99, max_tokens=4))
    assert r.status_code == 200, r.text


@contextlib.asynccontextmanager
async def full_server(server: LiveServer, http: httpx.AsyncClient) -> AsyncIterator[None]:
    """Hold 2 running and 2 waiting streams open for the block, then drop them."""
    lines: list[Any] = []
    async with contextlib.AsyncExitStack() as stack:
        for i in range(4):
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.base_url, headers=AUTH, timeout=60.0)
            )
            body = chat_body(i, stream=True, max_tokens=480)
            response = await stack.enter_async_context(
                client.stream("POST", "/v1/chat/completions", json=body)
            )
            assert response.status_code == 200
            lines.append(response.aiter_lines())  # kept: collecting it closes the connection
            first = await anext(lines[-1])  # the role chunk, sent before any token
            assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"]["role"]
        await wait_for_metrics(http, {RUNNING: 2.0, WAITING: 2.0}, within=10.0)
        yield
    # dropping the streams aborts running and waiting requests alike
    await wait_for_metrics(http, IDLE, within=2.0)


async def test_full_queue_is_rate_limit_error(
    small_server: LiveServer, http: httpx.AsyncClient, mode: str
) -> None:
    api = OpenAICalls(mode, small_server.base_url, api_key=API_KEY)
    model = (await api.list_models())[0]
    try:
        async with full_server(small_server, http):
            for kind in ("chat", "completion"):
                with pytest.raises(openai.RateLimitError) as info:
                    await api.create(kind, **request_args(kind, model, "hi", max_tokens=4))
                assert info.value.status_code == 429
                assert info.value.code == "rate_limit_exceeded"
                assert int(info.value.response.headers["retry-after"]) >= 1
                r = await http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 4})
                assert_rate_limited(r)
            assert (await http.get("/health")).status_code == 200  # busy is not unhealthy
        result = await api.create("chat", **request_args("chat", model, "hi", max_tokens=4))
        assert result.choices[0].message.content is not None
    finally:
        await api.close()
