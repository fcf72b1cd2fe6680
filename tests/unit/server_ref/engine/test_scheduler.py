"""Scheduler: chunked prefill, caps, queue bound and room, preemption on KV exhaustion, finish.

``step`` does to the sequences what the engine does after a forward pass: every scheduled
entry advances ``num_computed`` by ``num_new``; entries that sample get one (fake) token.
"""

from __future__ import annotations

import random

import pytest

from server_ref.engine.kv_cache import BlockManager
from server_ref.engine.scheduler import ScheduledSeq, Scheduler
from server_ref.engine.sequence import Sequence, Status
from server_ref.engine.types import QueueFullError, SamplingParams

FAKE_TOKEN = 7


def make_scheduler(
    num_blocks: int = 64,
    block_size: int = 4,
    *,
    max_num_seqs: int = 8,
    max_queue: int = 16,
    max_batched_tokens: int = 16,
) -> Scheduler:
    return Scheduler(
        BlockManager(num_blocks, block_size),
        max_num_seqs=max_num_seqs,
        max_queue=max_queue,
        max_batched_tokens=max_batched_tokens,
    )


def make_seq(request_id: str, prompt_len: int, max_tokens: int = 4) -> Sequence:
    return Sequence(request_id, list(range(prompt_len)), SamplingParams(max_tokens), frozenset())


def step(sched: Scheduler) -> list[ScheduledSeq]:
    """One engine step; sequences that reach max_tokens are finished."""
    batch = sched.schedule()
    assert sum(s.num_new for s in batch) <= sched.max_batched_tokens
    assert len(sched.running) <= sched.max_num_seqs
    for s in batch:
        assert s.num_new > 0
        covered = len(sched.blocks.table(s.seq.request_id)) * sched.blocks.block_size
        assert covered >= s.seq.num_computed + s.num_new
    for s in batch:
        s.seq.num_computed += s.num_new
    for s in batch:
        if s.samples:
            s.seq.output_ids.append(FAKE_TOKEN)
            if len(s.seq.output_ids) >= s.seq.params.max_tokens:
                sched.finish(s.seq)
    assert sched.queue_room() == sched.max_queue - len(sched.waiting)  # admissions, preemptions
    return batch


def plan(batch: list[ScheduledSeq]) -> dict[str, tuple[int, bool]]:
    return {s.seq.request_id: (s.num_new, s.samples) for s in batch}


def test_short_prompt_prefills_in_one_step_then_decodes_one_token_at_a_time() -> None:
    sched = make_scheduler()
    a = make_seq("a", 5, max_tokens=3)
    sched.add(a)
    assert plan(step(sched)) == {"a": (5, True)}
    assert plan(step(sched)) == {"a": (1, True)}
    assert plan(step(sched)) == {"a": (1, True)}
    assert a.finished and a.output_ids == [FAKE_TOKEN] * 3
    assert not sched.has_work() and sched.blocks.num_used == 0
    assert sched.schedule() == []


def test_samples_is_decided_when_scheduled() -> None:
    # the engine advances num_computed (and appends the new token) before it reads .samples
    sched = make_scheduler()
    seq = make_seq("a", 3)
    sched.add(seq)
    (entry,) = sched.schedule()
    seq.num_computed += entry.num_new
    assert entry.samples
    seq.output_ids.append(FAKE_TOKEN)
    assert entry.samples


def test_long_prompt_is_chunked_while_running_decodes_keep_going() -> None:
    sched = make_scheduler(max_batched_tokens=8)
    a = make_seq("a", 3, max_tokens=10)
    sched.add(a)
    step(sched)
    long = make_seq("long", 20)
    sched.add(long)
    plans = [plan(step(sched)) for _ in range(3)]
    assert plans == [
        {"a": (1, True), "long": (7, False)},
        {"a": (1, True), "long": (7, False)},
        {"a": (1, True), "long": (6, True)},
    ]
    assert long.num_computed == 20 and long.output_ids == [FAKE_TOKEN]
    assert plan(step(sched)) == {"a": (1, True), "long": (1, True)}


def test_prompt_longer_than_the_budget_alone_takes_several_steps() -> None:
    sched = make_scheduler(max_batched_tokens=4)
    sched.add(make_seq("a", 10))
    assert [plan(step(sched))["a"] for _ in range(4)] == [
        (4, False),
        (4, False),
        (2, True),
        (1, True),
    ]


def test_max_num_seqs_caps_the_running_set() -> None:
    sched = make_scheduler(max_num_seqs=2)
    seqs = [make_seq(f"s{i}", 2, max_tokens=2) for i in range(3)]
    for s in seqs:
        sched.add(s)
    assert set(plan(step(sched))) == {"s0", "s1"}
    assert list(sched.waiting) == [seqs[2]] and seqs[2].status is Status.WAITING
    step(sched)  # s0 and s1 reach max_tokens and leave
    assert plan(step(sched)) == {"s2": (2, True)}


def test_waiting_queue_bound_raises_queue_full() -> None:
    sched = make_scheduler(max_queue=2)
    sched.add(make_seq("a", 2))
    sched.add(make_seq("b", 2))
    with pytest.raises(QueueFullError) as info:
        sched.add(make_seq("c", 2))
    assert info.value.retry_after > 0
    assert [s.request_id for s in sched.waiting] == ["a", "b"]
    assert sched.queue_room() == 0
    step(sched)  # both admitted: the queue has room again
    assert sched.queue_room() == 2
    sched.add(make_seq("c", 2))
    assert sched.queue_room() == 1


@pytest.mark.parametrize("extra", [0, 1])
def test_request_bigger_than_the_whole_cache_is_rejected(extra: int) -> None:
    sched = make_scheduler(num_blocks=4, block_size=4)
    seq = make_seq("big", 10, max_tokens=6 + extra)
    if extra:
        with pytest.raises(ValueError, match="KV cache"):
            sched.add(seq)
        assert not sched.has_work()
    else:
        sched.add(seq)  # exactly the capacity is fine
        while sched.has_work():
            step(sched)
        assert len(seq.output_ids) == 6


def test_kv_exhaustion_preempts_the_newest_running_sequence() -> None:
    # 4 blocks of 4 slots: after 8 positions a and b fill two blocks each, then need a third
    sched = make_scheduler(num_blocks=4, block_size=4, max_num_seqs=2)
    a, b, c = make_seq("a", 4, max_tokens=8), make_seq("b", 4, max_tokens=8), make_seq("c", 1)
    for s in (a, b, c):
        sched.add(s)
    batch = step(sched)
    while b in sched.running:
        batch = step(sched)
    assert plan(batch) == {"a": (1, True)}  # a grew into the blocks b gave back
    assert b.num_computed == 0 and sched.blocks.table("b") == []
    assert list(sched.waiting) == [b, c]  # the preempted sequence goes to the front
    assert len(b.output_ids) == 5  # its tokens survive; they are recomputed later
    assert sched.blocks.num_used == 3
    while b not in sched.running:
        batch = step(sched)
    # readmitted once a finished: one chunk recomputes the prompt and its 5 tokens, then samples
    assert a.finished and plan(batch) == {"b": (9, True), "c": (1, True)}
    assert (b.num_computed, len(b.output_ids)) == (9, 6)
    while sched.has_work():
        step(sched)
    assert b.finished and c.finished and len(b.output_ids) == 8
    assert sched.blocks.num_used == 0


def test_finish_frees_blocks_and_is_idempotent() -> None:
    sched = make_scheduler(max_num_seqs=1)
    a, b = make_seq("a", 6), make_seq("b", 3)
    sched.add(a)
    sched.add(b)
    step(sched)
    assert sched.blocks.num_used == 2
    for _ in range(2):
        sched.finish(a)
        assert a.finished and a not in sched.running
        assert sched.blocks.num_used == 0 and sched.blocks.table("a") == []
    assert sched.queue_room() == sched.max_queue - 1
    sched.finish(b)  # still waiting: removed from the queue
    assert b.finished and not sched.waiting and not sched.has_work()
    assert sched.queue_room() == sched.max_queue


@pytest.mark.parametrize("seed", range(20))
def test_random_workload_always_completes_and_keeps_the_books(seed: int) -> None:
    rng = random.Random(seed)
    sched = make_scheduler(
        num_blocks=rng.randint(6, 12),
        block_size=rng.choice([1, 2, 4]),
        max_num_seqs=rng.randint(1, 4),
        max_batched_tokens=rng.randint(1, 12),
    )
    cap = sched.blocks.capacity_tokens
    seqs = []
    for i in range(8):
        prompt = rng.randint(1, cap - 1)
        seqs.append(make_seq(f"s{i}", prompt, max_tokens=rng.randint(1, cap - prompt)))
        sched.add(seqs[-1])
    for _ in range(10_000):
        if not sched.has_work():
            break
        step(sched)
        held = sum(len(sched.blocks.table(s.request_id)) for s in seqs)
        assert held == sched.blocks.num_used
        assert not set(map(id, sched.running)) & set(map(id, sched.waiting))
        assert all(s.status is Status.WAITING and s.num_computed == 0 for s in sched.waiting)
        assert all(s.status is Status.RUNNING for s in sched.running)
    assert all(s.finished and len(s.output_ids) == s.params.max_tokens for s in seqs)
    assert sched.blocks.num_used == 0


def test_prefix_cache_lookups_are_counted_once_per_admission() -> None:
    sched = make_scheduler(block_size=4, max_batched_tokens=64)
    first = make_seq("first", 13)
    sched.add(first)
    sched.schedule()
    first.num_computed = 13
    sched.blocks.commit("first", 13, first.tokens_between)  # the engine, after the forward pass
    sched.finish(first)
    sched.add(make_seq("second", 13))  # the same 13 prompt tokens
    step(sched)
    assert sched.prefix_queried_tokens == 26
    assert sched.prefix_hit_tokens == 12  # three full blocks; the last token is computed
