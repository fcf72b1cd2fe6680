"""``AsyncEngine``: its queue bound, checked from the event loop while the engine thread works;
slow consumers; failed batches; ending everything at shutdown.

The engine runs a stand-in model (every step returns logits that pick token 3), so the tests
can hold the engine thread at a chosen point: inside a step, or between taking new requests
from the inbox and handing them to the scheduler; or make its forward pass fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from server_ref.engine.async_engine import (
    MAX_BATCH_FAILURES_IN_A_ROW,
    SLOW_CONSUMER,
    AsyncEngine,
)
from server_ref.engine.engine import LLMEngine
from server_ref.engine.faults import BATCH_FAILED
from server_ref.engine.kv_cache import BlockManager
from server_ref.engine.scheduler import ScheduledSeq, Scheduler
from server_ref.engine.types import (
    EngineDeadError,
    ModelInfo,
    QueueFullError,
    SamplingParams,
    StepOutput,
)

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
        self.failing = False  # every forward pass raises
        self.delay = 0.0  # seconds each step takes

    def execute(self, batch: list[ScheduledSeq], tables: list[list[int]]) -> torch.Tensor:
        self.in_step.set()
        assert self.release.wait(10)
        time.sleep(self.delay)
        if self.failing:
            raise RuntimeError("injected device failure")
        logits = torch.zeros(sum(s.samples for s in batch), VOCAB)
        logits[:, 3] = 1.0
        return logits


class Tokenizer:
    eos_token_id = None
    special_tokens: dict[str, int] = {}  # noqa: RUF012

    def token_bytes(self, token_id: int) -> bytes:
        return b"x"


def make_engine(runner: Runner, *, max_num_seqs: int = 4, max_queue: int = 4) -> LLMEngine:
    scheduler = Scheduler(
        BlockManager(64, 4),
        max_num_seqs=max_num_seqs,
        max_queue=max_queue,
        max_batched_tokens=64,
    )
    info = ModelInfo(id="stand-in", context_length=256, eos_token_ids=())
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


def start(engine: LLMEngine, started: list[AsyncEngine], **options: Any) -> AsyncEngine:
    async_engine = AsyncEngine(engine, **options)
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


async def outputs_of(stream: AsyncIterator[StepOutput]) -> list[StepOutput]:
    return [out async for out in stream]


async def test_a_reader_that_stops_reading_is_aborted_with_bounded_buffer(
    runner: Runner, started: list[AsyncEngine]
) -> None:
    engine = make_engine(runner)
    runner.delay = 0.002  # a reader that reads keeps up with a model that takes some time
    async_engine = start(engine, started, max_pending_outputs=16)
    long = SamplingParams(max_tokens=200, temperature=0.0)
    idle = async_engine.add_request("idle", [1, 2], long)  # never read until the end
    busy = await outputs_of(async_engine.add_request("busy", [1, 2], long))
    assert busy[-1].finish_reason == "length" and busy[-1].completion_tokens == 200

    late = await outputs_of(idle)
    assert len(late) == 17  # the 16 it was allowed to leave unread, then the abort
    assert (late[-1].finish_reason, late[-1].finished) == ("abort", True)
    assert late[-1].error == SLOW_CONSUMER.format(pending=16)
    assert late[-2].completion_tokens == 16
    assert engine.stats().kv_blocks_used == 0


async def test_a_failed_batch_fails_its_requests_and_the_next_ones_run(
    runner: Runner, started: list[AsyncEngine]
) -> None:
    async_engine = start(make_engine(runner), started)
    runner.failing = True
    failed = await drain(async_engine.add_request("a", [1, 2], GREEDY))
    assert failed.finish_reason == "error"
    assert failed.error == BATCH_FAILED.format(request_id="a")
    runner.failing = False
    assert (await drain(async_engine.add_request("b", [1, 2], GREEDY))).finish_reason == "length"
    assert async_engine.is_ready()


async def test_batches_failing_in_a_row_stop_the_engine(
    runner: Runner, started: list[AsyncEngine]
) -> None:
    async_engine = start(make_engine(runner), started)
    runner.failing = True
    for i in range(MAX_BATCH_FAILURES_IN_A_ROW - 1):
        assert (await drain(async_engine.add_request(f"r{i}", [1, 2], GREEDY))).error
        assert async_engine.is_ready()  # one more failure could still be a passing condition
    last = await drain(async_engine.add_request("last", [1, 2], GREEDY))
    assert last.finish_reason == "error"
    assert not async_engine.is_ready()
    with pytest.raises(EngineDeadError, match="batches in a row"):
        async_engine.add_request("after", [1, 2], GREEDY)


async def test_abort_all_ends_every_request_as_stopped_by_the_server(
    runner: Runner, started: list[AsyncEngine]
) -> None:
    engine = make_engine(runner)
    runner.release.clear()
    async_engine = start(engine, started)
    long = SamplingParams(max_tokens=100, temperature=0.0)
    streams = [async_engine.add_request(f"r{i}", [1, 2], long) for i in range(3)]
    assert runner.in_step.wait(10)
    async_engine.abort_all("going away")
    runner.release.set()
    for stream in streams:
        last = await drain(stream)
        assert (last.finish_reason, last.error) == ("abort", "going away")
    assert engine.stats().kv_blocks_used == 0
    assert async_engine.is_ready()
