"""The model runner: the only place that touches the device.

It owns the model and the KV cache tensors. Each step it takes the CPU plan of
``step_plan.plan_step`` (flat token ids, positions, cache slots, attention groups), moves it to
the device as a ``BatchMeta``, runs the model and returns next-token logits. Pure-decode steps
can instead replay captured CUDA graphs (``cuda_graphs``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from server_ref.engine.cuda_graphs import DecodeGraphs
from server_ref.engine.scheduler import ScheduledSeq
from server_ref.engine.step_plan import StepPlan, plan_step, slots_of
from server_ref.models.attention_meta import AttnGroup, BatchMeta
from server_ref.models.llama import Llama


class ModelRunner:
    """Owns the model and its KV cache.

    ``decode_graphs``: run pure-decode steps through ``DecodeGraphs`` (captured CUDA graphs on
    a GPU; the same padded path eagerly on CPU, for tests).
    """

    def __init__(
        self,
        model: Llama,
        num_blocks: int,
        block_size: int,
        *,
        decode_graphs: bool = False,
        max_batch: int = 256,
    ) -> None:
        self.model = model
        self.device = model.device
        # one block more than the scheduler hands out: its first slot is the padding rows' trash
        self.cache = model.new_cache(num_blocks + 1, block_size)
        self.block_size = block_size
        self.graphs = (
            DecodeGraphs(
                model,
                self.cache,
                trash_slot=num_blocks * block_size,
                max_batch=max_batch,
                capture=self.device.type == "cuda",
            )
            if decode_graphs
            else None
        )

    @torch.inference_mode()
    def execute(self, batch: list[ScheduledSeq], tables: list[list[int]]) -> Tensor:
        """Run one step; return fp32 logits [M, vocab] for the entries that sample, in order."""
        if self.graphs is not None and all(s.num_new == 1 for s in batch):
            widths = [s.seq.num_computed + 1 for s in batch]
            if self.graphs.supports(len(batch), max(widths)):
                return self._decode_with_graphs(batch, tables, widths)
        return self._run(plan_step(batch, tables, self.block_size))

    def _run(self, plan: StepPlan) -> Tensor:
        dev = self.device
        meta = BatchMeta(
            positions=plan.positions.to(dev),
            slot_mapping=plan.slot_mapping.to(dev),
            groups=[
                AttnGroup(g.rows, g.n_seqs, g.q_len, g.key_slots.to(dev), g.mask.to(dev))
                for g in plan.groups
            ],
            logits_rows=torch.tensor(plan.logits_rows, dtype=torch.long, device=dev),
        )
        logits: Tensor = self.model(torch.tensor(plan.tokens, device=dev), self.cache, meta)
        order = plan.to_batch_order
        if order == list(range(len(order))):  # no copy of [M, vocab] (always so at batch 1)
            return logits
        out: Tensor = logits[order]
        return out

    def _decode_with_graphs(
        self, batch: list[ScheduledSeq], tables: list[list[int]], widths: list[int]
    ) -> Tensor:
        assert self.graphs is not None
        keys = [slots_of(t, 0, w, self.block_size) for t, w in zip(tables, widths, strict=True)]
        logits = self.graphs.run(
            tokens=[s.seq.token_at(s.seq.num_computed) for s in batch],
            positions=[w - 1 for w in widths],
            slots=[int(k[-1]) for k in keys],
            key_slots=keys,
        )
        rows = [i for i, s in enumerate(batch) if s.samples]
        out: Tensor = logits[rows] if len(rows) != len(batch) else logits
        return out
