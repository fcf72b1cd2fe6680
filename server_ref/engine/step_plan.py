"""Planning one forward step: a scheduled batch and its block tables -> flat inputs on the CPU.

Pure bookkeeping, testable without a model: which token goes in which row of the flat batch,
its position and cache slot, which keys each attention group reads and how they are masked,
and which rows are sampled. The runner moves the plan to the device and runs the model.

Decodes (one new token each) come first and attend as one group; every longer chunk (a
prefill, or a recomputation after preemption) is a group of its own, attending causally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from server_ref.engine.scheduler import ScheduledSeq
from server_ref.models.attention_meta import KEY_WIDTH_MULTIPLE, AttnGroup


@dataclass
class StepPlan:
    """The model inputs of one step, in plan order (decodes first), all on the CPU."""

    tokens: list[int]  # [N] the new tokens of every scheduled entry, flattened
    positions: Tensor  # [N] position of each in its sequence
    slot_mapping: Tensor  # [N] cache slot its key/value is written to
    groups: list[AttnGroup]  # key slots [S, Lk] and masks [S, 1, Q, Lk], Lk padded
    logits_rows: list[int]  # [M] rows whose logits are sampled (each entry's last row)
    order: list[int]  # batch index of the entry at each plan position
    to_batch_order: list[int]  # logits row (plan order) of each sampling entry, batch order


def slots_of(table: Sequence[int], start: int, end: int, block_size: int) -> Tensor:
    """Cache slots of positions ``start..end-1`` of a sequence whose blocks are ``table``."""
    pos = torch.arange(start, end)
    bt = torch.tensor(table, dtype=torch.long)
    return bt[pos // block_size] * block_size + pos % block_size


def padded_width(width: int) -> int:
    """Key widths are padded for batch invariance (``Attention.attend``)."""
    return -(-width // KEY_WIDTH_MULTIPLE) * KEY_WIDTH_MULTIPLE


def plan_step(
    batch: Sequence[ScheduledSeq], tables: Sequence[Sequence[int]], block_size: int
) -> StepPlan:
    """Lay out one step. ``tables[i]`` is the block table of ``batch[i]``'s sequence.

    >>> batch = scheduler.schedule()  # doctest: +SKIP
    >>> tables = [scheduler.blocks.table(s.seq.request_id) for s in batch]  # doctest: +SKIP
    >>> plan = plan_step(batch, tables, scheduler.blocks.block_size)  # doctest: +SKIP
    """
    order = sorted(range(len(batch)), key=lambda i: batch[i].num_new != 1)
    tokens: list[int] = []
    positions: list[Tensor] = []
    slot_maps: list[Tensor] = []
    groups: list[AttnGroup] = []
    logits_rows: list[int] = []
    ones = [i for i in order if batch[i].num_new == 1]
    row = 0
    if ones:
        lens = [batch[i].seq.num_computed + 1 for i in ones]
        width = padded_width(max(lens))
        key_slots = torch.zeros(len(ones), width, dtype=torch.long)
        for j, i in enumerate(ones):
            key_slots[j, : lens[j]] = slots_of(tables[i], 0, lens[j], block_size)
        mask = torch.arange(width)[None, :] < torch.tensor(lens)[:, None]  # [S, Lk]
        groups.append(
            AttnGroup(slice(0, len(ones)), len(ones), 1, key_slots, mask[:, None, None, :])
        )
    for i in order:
        s = batch[i]
        start, end = s.seq.num_computed, s.seq.num_computed + s.num_new
        tokens += s.seq.tokens_between(start, end)
        positions.append(torch.arange(start, end))
        all_slots = slots_of(tables[i], 0, end, block_size)
        slot_maps.append(all_slots[start:end])
        if s.num_new != 1:
            width = padded_width(end)
            keys = torch.zeros(1, width, dtype=torch.long)
            keys[0, :end] = all_slots
            q = torch.arange(start, end)[:, None]
            k = torch.arange(width)[None, :]
            mask = (k <= q)[None, None]  # [1, 1, Q, Lk]: causal, so the padding is masked
            groups.append(AttnGroup(slice(row, row + s.num_new), 1, s.num_new, keys, mask))
        row += s.num_new
        if s.samples:
            logits_rows.append(row - 1)
    # logits come back in `order`; the engine wants the sampling entries in the batch's order
    sampling_in_order = [i for i in order if batch[i].samples]
    back = sorted(range(len(sampling_in_order)), key=lambda j: sampling_in_order[j])
    return StepPlan(
        tokens=tokens,
        positions=torch.cat(positions),
        slot_mapping=torch.cat(slot_maps),
        groups=groups,
        logits_rows=logits_rows,
        order=order,
        to_batch_order=back,
    )
