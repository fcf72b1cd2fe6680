"""``AsyncEngine``'s queue bound, checked from the event loop while the engine thread works.

The engine runs a stand-in model (every step returns logits that pick token 3), so the tests
can hold the engine thread at a chosen point: inside a step, or between taking new requests
from the inbox and handing them to the scheduler.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from server_ref.engine.async_engine import AsyncEngine
from server_ref.engine.engine import LLMEngine
from server_ref.engine.kv_cache import BlockManager
from server_ref.engine.scheduler import ScheduledSeq, Scheduler
from server_ref.engine.types import ModelInfo, QueueFullError, SamplingParams, StepOutput

VOCAB = 8
GREEDY = SamplingParams(max_tokens=2, temperature=0.0)


class Runner:
    """Returns logits favouring token 3; ``hold`` keeps the next steps waiting until released."""

    def __init__(self) -> None:
        self.model = SimpleNamespace(cfg=SimpleNamespace(vocab_size=VOCAB))
        self.device = torch.device("cpu")
        self.in_step = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def execute(self, batch: list[ScheduledSeq], tables: list[list[int]]) -> torch.Tensor:
        self.in_step.set()
        assert self.release.wait(10)
        logits = torch.zeros(sum(s.samples for s in batch), VOCAB)
        logits[:, 3] = 1.0
        return logits


class Tokenizer:
    eos_token_id = None
    special_tokens: dict[str, int] = {}  # noqa: RUF012

    def token_bytes(self, token_id: int) -> bytes:
        return b"x"


def make_engine(runner: Runner, *, max_num_seqs: int, max_queue: int) -> LLMEngine:
    scheduler = Scheduler(
        BlockManager(32, 4),
        max_num_seqs=max_num_seqs,
        max_queue=max_queue,
        max_batched_tokens=64,
    )
    info = ModelInfo(id="stand-in", context_length=64, eos_token_ids=())
    return LLMEngine(runner, Tokenizer(), scheduler, info)  # type: ignore[arg-type]


@pytest.fixture
def runner() -> Runner:
    return Runner()


@pytest.fixture
def started() -> Iterator[list[AsyncEngine]]:
    engines: list[AsyncEngine] = []
    yield engines
    for engine in engines:
        engine.engine.runner.release.set()  # type: ignore[attr-defined]
        engine.shutdown()


def start(engine: LLMEngine, started: list[AsyncEngine]) -> AsyncEngine:
    async_engine = AsyncEngine(engine)
    async_engine.start()
    started.append(async_engine)
    return async_engine


async def drain(stream: AsyncIterator[StepOutput]) -> StepOutput:
    last: Any = None
    async for out in stream:
        last = out
    assert last is not None and last.finished
    return last  # type: ignore[no-any-return]


async def test_requests_on_their_way_to_the_scheduler_count_against_the_queue(
    runner: Runner, started: list[AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(runner, max_num_seqs=1, max_queue=2)
    taken, admit = threading.Event(), threading.Event()
    add = engine.add_request

    def slow_add(request_id: str, prompt_ids: list[int], params: SamplingParams) -> None:
        taken.set()  # the engine thread holds requests that are neither queued nor waiting
        assert admit.wait(10)
        add(request_id, prompt_ids, params)

    monkeypatch.setattr(engine, "add_request", slow_add)
    async_engine = start(engine, started)
    first = async_engine.add_request("a", [1, 2], GREEDY)
    assert taken.wait(10)
    second = async_engine.add_request("b", [1, 2], GREEDY)
    assert engine.scheduler.queue_room() == 2  # nothing has reached the scheduler yet
    with pytest.raises(QueueFullError):
        async_engine.add_request("c", [1, 2], GREEDY)

    admit.set()
    assert (await drain(first)).completion_tokens == 2
    assert (await drain(second)).completion_tokens == 2
    assert engine.scheduler.queue_room() == 2
    assert (await drain(async_engine.add_request("d", [1, 2], GREEDY))).finish_reason == "length"


async def test_a_request_admitted_to_a_running_step_frees_its_queue_place(
    runner: Runner, started: list[AsyncEngine]
) -> None:
    engine = make_engine(runner, max_num_seqs=1, max_queue=1)
    runner.release.clear()
    async_engine = start(engine, started)
    running = async_engine.add_request("a", [1, 2], GREEDY)
    assert runner.in_step.wait(10)  # "a" left the queue for the step the thread is inside
    assert engine.scheduler.queue_room() == 1
    waiting = async_engine.add_request("b", [1, 2], GREEDY)  # takes the one queue place
    with pytest.raises(QueueFullError):
        async_engine.add_request("c", [1, 2], GREEDY)

    runner.release.set()
    await drain(running)
    await drain(waiting)
    assert engine.scheduler.queue_room() == 1
