"""Fault isolation through HTTP: eight concurrent greedy streams, a fault injected into the
engine for one of them at each stage of a step (``kit.faults``). The other seven get exactly
the tokens they get alone, ``/health`` stays 200, and nothing stays allocated. A fault in the
forward pass fails the whole batch, and the next eight requests succeed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from kit.faults import Faults
from kit.in_process import running_engine, serve_in_thread
from kit.live_clients import KV_USAGE, RUNNING, StreamRun, greedy_chat_stream, wait_for_metrics

from server_ref.api.app import create_app
from server_ref.engine.async_engine import AsyncEngine
from server_ref.engine.faults import STAGES, Stage

PROMPTS = [f"request {i}: tell me about {'many ' * i}things" for i in range(8)]
VICTIM = 3
MAX_TOKENS = 48
IDLE = {RUNNING: 0.0, KV_USAGE: 0.0}


@pytest.fixture(scope="module")
def engine(tiny_gguf: Path) -> Iterator[AsyncEngine]:
    with running_engine(tiny_gguf) as engine:
        yield engine


@pytest.fixture(scope="module")
def base_url(engine: AsyncEngine) -> Iterator[str]:
    with serve_in_thread(create_app(engine, enable_web=False)) as url:
        yield url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=60
    )
    yield client
    await client.close()


@pytest.fixture
async def http(base_url: str, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        yield http
        engine.engine.faults = None
        await wait_for_metrics(http, IDLE, within=2.0)
        assert (await http.get("/health")).status_code == 200


@pytest.fixture(scope="module")
def solo(engine: AsyncEngine, base_url: str) -> list[StreamRun]:
    """Each prompt's greedy stream with nothing else running."""

    async def one_by_one() -> list[StreamRun]:
        async with openai.AsyncOpenAI(
            base_url=f"{base_url}/v1", api_key="unused", max_retries=0
        ) as client:
            model = engine.model_info.id
            return [await greedy_chat_stream(client, model, p, MAX_TOKENS) for p in PROMPTS]

    return asyncio.run(one_by_one())


def requests_for(engine: AsyncEngine, prompt_index: int) -> object:
    """A predicate on engine request ids: the request whose prompt is ``PROMPTS[i]``."""
    marker = f"request {prompt_index}:"

    def matches(request_id: str) -> bool:
        seq = engine.engine._seqs.get(request_id)  # the engine thread is inside its step
        return seq is not None and marker in engine.tokenizer.decode(seq.prompt_ids)

    return matches


async def eight_streams(
    client: openai.AsyncOpenAI, engine: AsyncEngine, *, endless: bool = False
) -> list[StreamRun | BaseException]:
    model = engine.model_info.id
    max_tokens, extra = (400, {"ignore_eos": True}) if endless else (MAX_TOKENS, None)
    runs = (greedy_chat_stream(client, model, p, max_tokens, extra) for p in PROMPTS)
    return await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), timeout=120)


@pytest.mark.parametrize("stage", [s for s in STAGES if s != "forward"])
async def test_one_request_failing_leaves_the_other_seven_alone(
    engine: AsyncEngine,
    client: openai.AsyncOpenAI,
    http: httpx.AsyncClient,
    solo: list[StreamRun],
    stage: Stage,
) -> None:
    faults = Faults()
    faults.add(stage, where=requests_for(engine, VICTIM), after=5)  # type: ignore[arg-type]
    engine.engine.faults = faults
    runs = await eight_streams(client, engine)

    assert faults.fired, f"the {stage} fault never fired"
    failure = runs[VICTIM]
    assert isinstance(failure, openai.APIError), failure
    assert "internal error occurred while generating this request" in failure.message
    for i, run in enumerate(runs):
        if i != VICTIM:
            assert isinstance(run, StreamRun), run
            assert run.tokens == solo[i].tokens, f"stream {i} changed when {VICTIM} failed"
            assert run.finish_reason == solo[i].finish_reason
    assert (await http.get("/health")).status_code == 200


async def test_a_forward_pass_failure_fails_the_batch_and_the_next_eight_succeed(
    engine: AsyncEngine,
    client: openai.AsyncOpenAI,
    http: httpx.AsyncClient,
    solo: list[StreamRun],
) -> None:
    long = asyncio.ensure_future(eight_streams(client, engine, endless=True))
    await wait_for_metrics(http, {RUNNING: 8.0}, within=30.0)  # all eight in one batch
    faults = Faults()
    faults.add("forward", where=requests_for(engine, VICTIM))  # type: ignore[arg-type]
    engine.engine.faults = faults
    runs = await long
    engine.engine.faults = None

    assert len(faults.fired) == 1
    for run in runs:
        assert isinstance(run, openai.APIError), run
        assert "forward pass failed for the batch" in run.message
    await wait_for_metrics(http, IDLE, within=2.0)
    assert (await http.get("/health")).status_code == 200

    again = await eight_streams(client, engine)
    for run, alone in zip(again, solo, strict=True):
        assert isinstance(run, StreamRun), run
        assert run.tokens == alone.tokens
