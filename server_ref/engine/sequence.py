"""One request's state as the engine sees it (pure Python)."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from server_ref.engine.detokenizer import IncrementalDetokenizer
from server_ref.engine.types import FinishReason, SamplingParams


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """Tokens ``all_ids[:num_computed]`` have their keys/values in the cache.

    Each step computes ``all_ids[num_computed : num_computed + n]``; when that reaches the end
    of ``all_ids`` the logits of the last position are sampled and one token is appended. The
    same rule covers (chunked) prefill, decode and recomputation after preemption.
    """

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    eos_ids: frozenset[int]
    arrival_time: float = field(default_factory=time.monotonic)
    output_ids: list[int] = field(default_factory=list)
    num_computed: int = 0
    status: Status = Status.WAITING
    finish_reason: FinishReason | None = None
    # time.monotonic() stamps for timings (API tracing): first admitted to a batch (the end
    # of its queue wait), first and latest token sampled
    scheduled_time: float | None = None
    first_token_time: float | None = None
    last_token_time: float | None = None
    detok: IncrementalDetokenizer = field(init=False)

    def __post_init__(self) -> None:
        self.detok = IncrementalDetokenizer(self.params.stop)

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    def token_at(self, i: int) -> int:
        p = len(self.prompt_ids)
        return self.prompt_ids[i] if i < p else self.output_ids[i - p]

    def tokens_between(self, start: int, end: int) -> list[int]:
        p = len(self.prompt_ids)
        if end <= p:
            return self.prompt_ids[start:end]
        if start >= p:
            return self.output_ids[start - p : end - p]
        return self.prompt_ids[start:] + self.output_ids[: end - p]

    @property
    def remaining(self) -> int:
        """Tokens still to compute before the next sample."""
        return self.num_tokens - self.num_computed

    @property
    def finished(self) -> bool:
        return self.status is Status.FINISHED

    def stop_ids(self) -> frozenset[int]:
        ids = set(self.params.stop_token_ids)
        if not self.params.ignore_eos:
            ids |= self.eos_ids
        return frozenset(ids)
