"""``plan_step``: a scheduled batch laid out as flat model inputs, without a model."""

from __future__ import annotations

import torch

from server_ref.engine.scheduler import ScheduledSeq
from server_ref.engine.sequence import Sequence
from server_ref.engine.step_plan import padded_width, plan_step, slots_of
from server_ref.engine.types import SamplingParams
from server_ref.models.attention_meta import KEY_WIDTH_MULTIPLE

BLOCK = 4


def seq(name: str, prompt: list[int], computed: int, output: list[int] | None = None) -> Sequence:
    s = Sequence(name, prompt, SamplingParams(max_tokens=8), frozenset())
    s.output_ids = list(output or [])
    s.num_computed = computed
    return s


def test_slots_follow_the_block_table() -> None:
    # positions 2..5 of a sequence holding blocks 7 and 3 (4 slots each)
    assert slots_of([7, 3], 2, 6, BLOCK).tolist() == [30, 31, 12, 13]


def test_key_widths_pad_to_the_batch_invariant_multiple() -> None:
    assert [padded_width(w) for w in (1, 64, 65)] == [64, 64, 128]
    assert KEY_WIDTH_MULTIPLE == 64


def test_a_mixed_batch_puts_decodes_first_and_samples_only_finished_chunks() -> None:
    # batch order: a prefill that reaches its end, a decode, a chunk that stops short
    prefill = ScheduledSeq(seq("prefill", [10, 11, 12, 13, 14], 0), 5)
    decode = ScheduledSeq(seq("decode", [20, 21, 22], 3, output=[23]), 1)
    chunk = ScheduledSeq(seq("chunk", list(range(30, 40)), 4), 3)
    tables = [[5, 6], [2], [0, 1, 9]]

    plan = plan_step([prefill, decode, chunk], tables, BLOCK)

    assert plan.order == [1, 0, 2]
    assert plan.tokens == [23, 10, 11, 12, 13, 14, 34, 35, 36]
    assert plan.positions.tolist() == [3, 0, 1, 2, 3, 4, 4, 5, 6]
    assert plan.slot_mapping.tolist() == [11, 20, 21, 22, 23, 24, 4, 5, 6]
    # rows 0 (decode) and 5 (the prefill's last token) are sampled; the short chunk is not
    assert plan.logits_rows == [0, 5]
    # logits come back decode first; the engine reads them in batch order: prefill, decode
    assert plan.to_batch_order == [1, 0]

    decodes, whole, part = plan.groups
    assert (decodes.rows, decodes.n_seqs, decodes.q_len) == (slice(0, 1), 1, 1)
    assert decodes.key_slots.shape == (1, 64)
    assert decodes.key_slots[0, :4].tolist() == [8, 9, 10, 11]
    assert decodes.mask.shape == (1, 1, 1, 64)
    assert decodes.mask[0, 0, 0].tolist() == [True] * 4 + [False] * 60

    assert (whole.rows, whole.n_seqs, whole.q_len) == (slice(1, 6), 1, 5)
    assert whole.key_slots[0, :5].tolist() == [20, 21, 22, 23, 24]
    causal = torch.arange(64)[None, :] <= torch.arange(5)[:, None]
    assert torch.equal(whole.mask[0, 0], causal)

    # a chunk in the middle of a prompt sees everything before it, causally
    assert (part.rows, part.n_seqs, part.q_len) == (slice(6, 9), 1, 3)
    assert part.key_slots[0, :7].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert torch.equal(part.mask[0, 0], torch.arange(64)[None, :] <= torch.arange(4, 7)[:, None])


def test_several_decodes_share_one_group_padded_to_the_longest() -> None:
    a = ScheduledSeq(seq("a", [1, 2], 2, output=[3]), 1)
    b = ScheduledSeq(seq("b", list(range(70)), 70, output=[9]), 1)
    tables = [[4], list(range(20))]

    plan = plan_step([a, b], tables, BLOCK)

    [group] = plan.groups
    assert (group.rows, group.n_seqs, group.q_len) == (slice(0, 2), 2, 1)
    assert group.key_slots.shape == (2, 128)
    assert group.mask[:, 0, 0].sum(dim=1).tolist() == [3, 71]
    assert plan.tokens == [3, 9] and plan.logits_rows == [0, 1]
    assert plan.to_batch_order == [0, 1]
    assert all(t.device.type == "cpu" for t in (plan.positions, plan.slot_mapping))
