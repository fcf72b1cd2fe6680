"""Continuous batching seen from outside: concurrent streams, and clients that go away."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from kit.live_clients import (
    KV_USAGE,
    RUNNING,
    WAITING,
    finished_count,
    greedy_chat_stream,
    wait_for_metrics,
)
from kit.live_server import LiveServer, ServerFactory
from kit.precision import invariant_int4

FRUITS = [
    "apples", "bananas", "cherries", "dates", "elderberries", "figs", "grapes", "honeydew",
    "kiwis", "lemons", "mangoes", "nectarines", "oranges", "papayas", "quinces", "raspberries",
]  # fmt: skip
# 16 different prompts (different lengths too, so prefill chunks and decode steps mix)
PROMPTS = [f"Prompt {i}: tell me about {fruit}" + " please" * i for i, fruit in enumerate(FRUITS)]
LONG = {"max_tokens": 400, "temperature": 0, "ignore_eos": True}
IDLE = {RUNNING: 0.0, WAITING: 0.0, KV_USAGE: 0.0}


@pytest.fixture(scope="module")
def invariant_server(tiny_server_factory: ServerFactory) -> Iterator[LiveServer]:
    # one matmul kernel for every step: under the default --int4 auto a stream's numbers
    # depend on the size of the steps it shares (engine.device.int4_max_rows)
    with tiny_server_factory("--int4", invariant_int4()) as server:
        yield server


@pytest.fixture
def base_url(invariant_server: LiveServer) -> str:
    return invariant_server.base_url


@pytest.fixture
async def aclient(base_url: str) -> Any:
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    yield client
    await client.close()


async def test_concurrent_streams_equal_solo_runs(
    aclient: openai.AsyncOpenAI, model_id: str, http: httpx.AsyncClient
) -> None:
    solo = [await greedy_chat_stream(aclient, model_id, p, 32) for p in PROMPTS]
    together = await asyncio.wait_for(
        asyncio.gather(*(greedy_chat_stream(aclient, model_id, p, 32) for p in PROMPTS)),
        timeout=120,
    )
    assert len({run.text for run in solo}) > 1, "different prompts should not all agree"
    for i, (alone, batched) in enumerate(zip(solo, together, strict=True)):
        assert batched.finish_reason == alone.finish_reason, i
        assert batched.tokens == alone.tokens, f"prompt {i}: tokens differ when batched"
        assert batched.text == alone.text, f"prompt {i}: text differs when batched"
    await wait_for_metrics(http, IDLE, within=2.0)


async def _read_events(lines: Any, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line.removeprefix("data: ")))
            if len(events) == count:
                break
    return events


async def test_closed_streams_free_everything(
    http: httpx.AsyncClient, base_url: str, model_id: str
) -> None:
    aborted = await finished_count(http, "abort")
    lines: list[Any] = []
    async with contextlib.AsyncExitStack() as streams:
        for i in range(8):
            body = {
                "model": model_id,
                "messages": [{"role": "user", "content": PROMPTS[i]}],
                "stream": True,
                **LONG,
            }
            # one connection per stream: closing the response closes the connection,
            # which is how the server learns the client is gone
            client = await streams.enter_async_context(
                httpx.AsyncClient(base_url=base_url, timeout=60.0)
            )
            response = await streams.enter_async_context(
                client.stream("POST", "/v1/chat/completions", json=body)
            )
            assert response.status_code == 200
            # kept referenced: a collected line iterator would close the connection itself
            lines.append(response.aiter_lines())
            events = await _read_events(lines[-1], 4)
            assert all(e["choices"][0]["finish_reason"] is None for e in events)
        # all eight are mid-generation, holding KV cache
        await wait_for_metrics(http, {RUNNING: 8.0, WAITING: 0.0}, within=5.0)
    # the clients are gone: within 2 seconds nothing runs and no KV block is held
    await wait_for_metrics(http, IDLE, within=2.0)
    assert await finished_count(http, "abort") == aborted + 8


async def test_abandoned_non_streaming_requests_are_aborted(
    base_url: str, http: httpx.AsyncClient, model_id: str
) -> None:
    body = {"model": model_id, "prompt": "Once upon a time", **LONG}
    aborted = await finished_count(http, "abort")

    async def give_up() -> None:
        async with httpx.AsyncClient(base_url=base_url) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post("/v1/completions", json=body, timeout=httpx.Timeout(60, read=0.5))

    await asyncio.gather(*(give_up() for _ in range(4)))
    await wait_for_metrics(http, IDLE, within=2.0)
    assert await finished_count(http, "abort") == aborted + 4  # not run to the end
