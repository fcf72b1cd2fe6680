"""Continuous-batching scheduler (pure Python, testable without a model).

Each step gets a token budget. Running sequences are served first (a decode costs one token,
an unfinished prefill takes a chunk of what is left), then waiting sequences are admitted in
arrival order while the budget, the running-sequence cap and free KV blocks allow. Long
prompts are therefore prefilled in chunks, so a newcomer never freezes running streams for
more than one chunk's worth of compute. When the cache runs out, the newest running sequence
is preempted: its blocks are freed and it is recomputed later (vLLM's recompute policy).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from server_ref.engine.kv_cache import BlockManager
from server_ref.engine.sequence import Sequence, Status
from server_ref.engine.types import QueueFullError


@dataclass(frozen=True)
class ScheduledSeq:
    seq: Sequence
    num_new: int  # tokens to compute this step: all_ids[num_computed : num_computed + num_new]
    # True when this step reaches the end of the sequence, so its logits are sampled. Fixed
    # when scheduled: the engine advances ``seq.num_computed`` before it reads this.
    samples: bool = field(init=False)

    def __post_init__(self) -> None:
        reaches_end = self.seq.num_computed + self.num_new == self.seq.num_tokens
        object.__setattr__(self, "samples", reaches_end)


class Scheduler:
    def __init__(
        self,
        blocks: BlockManager,
        *,
        max_num_seqs: int,
        max_queue: int,
        max_batched_tokens: int,
    ) -> None:
        self.blocks = blocks
        self.max_num_seqs = max_num_seqs
        self.max_queue = max_queue
        self.max_batched_tokens = max_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        # len(waiting), republished after every change: what other threads read (queue_room)
        self._num_waiting = 0
        # prefix caching, counted when a sequence is admitted: its tokens looked up, and those
        # found in the cache (GET /metrics: server_ref:prefix_cache_queries / _hits)
        self.prefix_queried_tokens = 0
        self.prefix_hit_tokens = 0

    def add(self, seq: Sequence) -> None:
        if len(self.waiting) >= self.max_queue:
            raise QueueFullError()
        if seq.num_tokens + seq.params.max_tokens > self.blocks.capacity_tokens:
            raise ValueError(
                f"request needs {seq.num_tokens + seq.params.max_tokens} tokens of KV cache, "
                f"the server has {self.blocks.capacity_tokens}"
            )
        self.waiting.append(seq)
        self._num_waiting = len(self.waiting)

    def queue_room(self) -> int:
        """Places left in the waiting queue. Safe to call from any thread: it reads one number
        that the engine thread republishes after each change, never the deque it mutates."""
        return self.max_queue - self._num_waiting

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> list[ScheduledSeq]:
        budget = self.max_batched_tokens
        out: list[ScheduledSeq] = []
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            n = min(seq.remaining, budget)
            while not self.blocks.can_grow(seq.request_id, seq.num_computed + n):
                victim = self.running[-1]
                self._preempt(victim)
                if victim is seq:
                    break
            else:
                self.blocks.grow(seq.request_id, seq.num_computed + n)
                out.append(ScheduledSeq(seq, n))
                budget -= n
                i += 1
                continue
            break  # seq itself was preempted; nothing after it is left running
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            if not self.blocks.table(seq.request_id):
                # reuse cached blocks of a known prefix (shared system prompt, earlier turns)
                seq.num_computed = self.blocks.match_prefix(
                    seq.request_id, seq.num_tokens, seq.tokens_between
                )
            n = min(seq.remaining, budget)
            if not self.blocks.can_grow(seq.request_id, seq.num_computed + n):
                self.blocks.free(seq.request_id)  # matched blocks go back to the cache
                seq.num_computed = 0
                break
            self.waiting.popleft()
            self.prefix_queried_tokens += seq.num_tokens
            self.prefix_hit_tokens += seq.num_computed
            self.blocks.grow(seq.request_id, seq.num_computed + n)
            seq.status = Status.RUNNING
            if seq.scheduled_time is None:  # the first admission ends the queue wait
                seq.scheduled_time = time.monotonic()
            self.running.append(seq)
            out.append(ScheduledSeq(seq, n))
            budget -= n
        self._num_waiting = len(self.waiting)
        return out

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.free(seq.request_id)
        seq.num_computed = 0
        seq.status = Status.WAITING
        self.waiting.appendleft(seq)

    def finish(self, seq: Sequence) -> None:
        """Remove a finished or aborted sequence and free its cache (idempotent)."""
        if seq in self.running:
            self.running.remove(seq)
        if seq in self.waiting:
            self.waiting.remove(seq)
            self._num_waiting = len(self.waiting)
        self.blocks.free(seq.request_id)
        seq.status = Status.FINISHED
