"""The app under a real uvicorn in a thread of the test process, over a real ``AsyncEngine``
on the tiny model, for what a separate process cannot reach: a device failure injected into
the runner, the scheduler watched, and a web page directory of our choosing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from kit.in_process import running_engine, serve_in_thread
from kit.live_clients import KV_USAGE, RUNNING, greedy_chat_stream, wait_for_metrics
from kit.precision import invariant_int4

from server_ref.api.app import create_app
from server_ref.engine.async_engine import MAX_BATCH_FAILURES_IN_A_ROW, AsyncEngine
from server_ref.engine.engine import LLMEngine

LONG = {"max_tokens": 400, "temperature": 0, "ignore_eos": True}


class StepFailure:
    """Wraps ``runner.execute``; once armed, the Nth forward pass from then on raises."""

    def __init__(self, engine: LLMEngine) -> None:
        self._execute = engine.runner.execute
        self.calls = 0
        self.fail_at: int | None = None

    def arm(self, steps_from_now: int) -> None:
        self.fail_at = self.calls + steps_from_now

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("injected device failure")
        return self._execute(*args, **kwargs)


@pytest.fixture
def engine(tiny_gguf: Path) -> Iterator[AsyncEngine]:
    with running_engine(tiny_gguf) as engine:
        yield engine


async def _read_sse(response: httpx.Response, lines: Any) -> list[Any]:
    """The rest of a stream's events (``[DONE]`` as the string)."""
    events: list[Any] = []
    async for line in lines:
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def test_a_failing_device_fails_each_batch_then_takes_the_server_down(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    failure = StepFailure(engine.engine)
    monkeypatch.setattr(engine.engine.runner, "execute", failure)
    app = create_app(engine, enable_web=False)
    with serve_in_thread(app) as base_url:
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=base_url, timeout=30.0)
            )
            aclient = openai.AsyncOpenAI(
                base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=30.0
            )
            stack.push_async_callback(aclient.close)

            # 1. a raw SSE stream that has started
            body = {"messages": [{"role": "user", "content": "one"}], "stream": True, **LONG}
            raw = await stack.enter_async_context(
                http.stream("POST", "/v1/chat/completions", json=body)
            )
            assert raw.status_code == 200
            lines = raw.aiter_lines()
            for _ in range(3):  # the role chunk and two content chunks
                assert (await anext(lines)).startswith("data: ")
                assert await anext(lines) == ""
            # 2. an openai-client stream that has started
            stream = await aclient.completions.create(
                model=engine.model_info.id,
                prompt="two",
                stream=True,
                max_tokens=400,
                temperature=0,
                extra_body={"ignore_eos": True},
            )
            first = await anext(aiter(stream))
            assert first.choices[0].finish_reason is None
            # 3. a non-streaming request waiting for its answer
            whole = asyncio.ensure_future(
                http.post("/v1/completions", json={"prompt": "three", **LONG})
            )
            await wait_for_metrics(http, {RUNNING: 3.0}, within=10.0)

            failure.arm(2)  # from the second forward pass on, every one fails

            events = await asyncio.wait_for(_read_sse(raw, lines), timeout=10)
            assert events[-1] == "[DONE]"
            error = events[-2]["error"]
            assert error["type"] == "server_error"
            assert "forward pass failed" in error["message"]

            with pytest.raises(openai.APIError, match="forward pass failed"):
                await asyncio.wait_for(_drain(stream), timeout=10)

            r = await asyncio.wait_for(whole, timeout=10)
            assert r.status_code == 500, r.text
            assert r.json()["error"]["type"] == "server_error"

            # One failed batch may be a passing condition: the server still serves.
            await wait_for_metrics(http, {RUNNING: 0.0, KV_USAGE: 0.0}, within=2.0)
            assert (await http.get("/health")).status_code == 200
            # A device that keeps failing fails every batch; after a few in a row the
            # server says it is unhealthy and refuses new work at once.
            for _ in range(MAX_BATCH_FAILURES_IN_A_ROW - 1):
                r = await http.post("/v1/completions", json={"prompt": "again", **LONG})
                assert r.status_code == 500, r.text
            health = await http.get("/health")
            assert health.status_code == 503
            assert health.json()["error"]["message"]
            for stream_flag in (False, True):
                r = await asyncio.wait_for(
                    http.post(
                        "/v1/chat/completions",
                        json={
                            "messages": [{"role": "user", "content": "hi"}],
                            "stream": stream_flag,
                        },
                    ),
                    timeout=10,
                )
                assert r.status_code == 503, r.text
                assert r.json()["error"]["type"] == "service_unavailable_error"
            assert engine.stats().kv_blocks_used == 0


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


async def test_web_page_leaves_api_statuses_alone(engine: AsyncEngine, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>chat</title>")
    app = create_app(engine, web_dir=tmp_path)
    with serve_in_thread(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as http:
            page = await http.get("/")
            assert page.status_code == 200
            assert "<title>chat</title>" in page.text
            r = await http.get("/v1/chat/completions")
            assert r.status_code == 405, r.text
            assert r.headers["allow"] == "POST"
            assert r.json()["error"]["code"] == "method_not_allowed"
            for method, path in (("GET", "/v1/nothing-here"), ("POST", "/v1/nothing-here")):
                r = await http.request(method, path)
                assert r.status_code == 404, r.text
                assert r.json()["error"]["type"] == "invalid_request_error"
            r = await http.post(
                "/v1/completions", json={"prompt": "hi", "max_tokens": 2, "ignore_eos": True}
            )
            assert r.status_code == 200, r.text


async def test_kv_cache_pressure_preempts_without_changing_outputs(
    tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1 MiB is 32 blocks (512 tokens) for the tiny model; six requests of ~130 tokens each
    # cannot all stay resident, so the scheduler must preempt and recompute. One matmul kernel
    # for every step: a recomputed token must get the numbers it got in its decode step.
    with running_engine(tiny_gguf, kv_cache_mib=1, int4=invariant_int4()) as engine:
        scheduler = engine.engine.scheduler
        preempted: list[str] = []
        preempt = scheduler._preempt

        def spy(seq: Any) -> None:
            preempted.append(seq.request_id)
            preempt(seq)

        monkeypatch.setattr(scheduler, "_preempt", spy)
        with serve_in_thread(create_app(engine, enable_web=False)) as base_url:
            client = openai.AsyncOpenAI(
                base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=60
            )
            model = engine.model_info.id
            prompts = [f"Request {i} wants {'many ' * i}tokens" for i in range(6)]
            try:
                solo = [await greedy_chat_stream(client, model, p, 100) for p in prompts]
                assert preempted == []
                together = await asyncio.wait_for(
                    asyncio.gather(*(greedy_chat_stream(client, model, p, 100) for p in prompts)),
                    timeout=120,
                )
            finally:
                await client.close()
            async with httpx.AsyncClient(base_url=base_url) as http:
                await wait_for_metrics(http, {RUNNING: 0.0, KV_USAGE: 0.0}, within=2.0)
    assert preempted, "the cache was never short; the test lost its point"
    for i, (alone, batched) in enumerate(zip(solo, together, strict=True)):
        assert batched.tokens == alone.tokens, f"request {i} changed after preemption"
        assert batched.text == alone.text
