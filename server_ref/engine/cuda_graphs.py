"""Captured CUDA graphs for decode steps.

A decode step of a small model launches some 1,500 tiny kernels; on a GPU the step costs
their launch latency, not their math (on the H200 we measured ~100 ms per step at any batch
size). Replaying a captured graph launches them all at once. A graph is fixed in shape, so
steps are padded up to a (batch, context width) bucket and each bucket is captured on first
use, like vLLM's and gpt-fast's decode graphs.

Padding rows compute a dummy token whose key/value goes to a trash slot of the cache that no
sequence owns, and attend only to that slot, so they never touch real state. The same padded
path runs eagerly (``capture=False``) where there is no GPU, which is how it is tested.
Capture itself has not run on a GPU yet, so the server enables it only with --cuda-graphs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from server_ref.models.attention_meta import AttnGroup, BatchMeta, KVCache
from server_ref.models.llama import Llama

BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
MIN_WIDTH = 64


def batch_bucket(n: int) -> int | None:
    return next((b for b in BATCH_BUCKETS if b >= n), None)


def width_bucket(width: int) -> int:
    """The power of two >= width (at least MIN_WIDTH): few graphs, little wasted attention."""
    return max(MIN_WIDTH, 1 << (width - 1).bit_length())


@dataclass
class _Bucket:
    tokens: Tensor  # [B]
    meta: BatchMeta  # static positions, slot_mapping, key_slots [B, W], mask [B, 1, 1, W]
    graph: torch.cuda.CUDAGraph | None = None
    logits: Tensor | None = None  # the captured output [B, vocab]


class DecodeGraphs:
    def __init__(
        self, model: Llama, cache: KVCache, trash_slot: int, max_batch: int, capture: bool
    ) -> None:
        self.model = model
        self.cache = cache
        self.trash = trash_slot
        self.max_batch = min(max_batch, BATCH_BUCKETS[-1])
        self.max_width = model.rope.shape[0]
        self.capture = capture
        self._buckets: dict[tuple[int, int], _Bucket] = {}
        self._pool = torch.cuda.graph_pool_handle() if capture else None

    def supports(self, batch: int, width: int) -> bool:
        return batch <= self.max_batch and width_bucket(width) <= self.max_width

    def run(
        self, tokens: list[int], positions: list[int], slots: list[int], key_slots: list[Tensor]
    ) -> Tensor:
        """One decode token per row: ``key_slots[i]`` lists row i's context (its new slot last).

        Returns fp32 logits [len(tokens), vocab].
        """
        n = len(tokens)
        lens = [len(k) for k in key_slots]
        bb, wb = batch_bucket(n), width_bucket(max(lens))
        assert bb is not None
        bucket = self._buckets.get((bb, wb)) or self._make(bb, wb)
        tok = torch.zeros(bb, dtype=torch.long)
        pos = torch.zeros(bb, dtype=torch.long)
        slot = torch.full((bb,), self.trash, dtype=torch.long)
        keys = torch.full((bb, wb), self.trash, dtype=torch.long)
        mask = torch.zeros(bb, wb, dtype=torch.bool)
        tok[:n], pos[:n], slot[:n] = (
            torch.tensor(tokens),
            torch.tensor(positions),
            torch.tensor(slots),
        )
        for i, k in enumerate(key_slots):
            keys[i, : lens[i]] = k
            mask[i, : lens[i]] = True
        mask[n:, 0] = True  # padding rows attend to the trash slot only
        meta = bucket.meta
        bucket.tokens.copy_(tok)
        meta.positions.copy_(pos)
        meta.slot_mapping.copy_(slot)
        meta.groups[0].key_slots.copy_(keys)
        meta.groups[0].mask.copy_(mask[:, None, None, :])
        if bucket.graph is not None and bucket.logits is not None:
            bucket.graph.replay()
            return bucket.logits[:n]
        out: Tensor = self.model(bucket.tokens, self.cache, meta)
        return out[:n]

    def _make(self, bb: int, wb: int) -> _Bucket:
        dev = self.model.device
        mask = torch.zeros(bb, 1, 1, wb, dtype=torch.bool, device=dev)
        mask[..., 0] = True
        meta = BatchMeta(
            positions=torch.zeros(bb, dtype=torch.long, device=dev),
            slot_mapping=torch.full((bb,), self.trash, dtype=torch.long, device=dev),
            groups=[
                AttnGroup(
                    slice(0, bb),
                    bb,
                    1,
                    torch.full((bb, wb), self.trash, dtype=torch.long, device=dev),
                    mask,
                )
            ],
            logits_rows=torch.arange(bb, device=dev),
        )
        bucket = _Bucket(torch.zeros(bb, dtype=torch.long, device=dev), meta)
        if self.capture:
            # warm up on a side stream (lazy inits must not be captured), then capture; the
            # static inputs point at the trash slot, so these passes touch no sequence's cache
            stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self.model(bucket.tokens, self.cache, meta)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                bucket.logits = self.model(bucket.tokens, self.cache, meta)
            bucket.graph = graph
        self._buckets[(bb, wb)] = bucket
        return bucket
