"""Which waiting inputs go into the next embedding forward pass (plain Python, no model).

A batch runs its matmuls on the real tokens only (``models.bert.Packing``), but attention
lays the batch out padded to its longest input: a 256-token text among 5-token texts makes
every short one attend over 256 positions (for all-MiniLM-L6-v2, 31 12-token texts and one
of 256 cost 3.2 GFLOP a layer in attention, 2.2 in all their real matmuls). So the planner
sorts the waiting inputs by length and cuts the sorted run into batches where

- the padded size (inputs x longest) stays within ``max_tokens`` and the count within
  ``max_inputs`` (bounds on one pass's time and memory), and
- padding is at most as large as the real tokens (``padded <= 2 * real``), unless the batch
  is at most ``SHORT`` tokens wide, where attention is a small part of the work and another
  pass would cost more than the padding saves.

Of those batches, the one holding the oldest waiting input runs next, so every input is
served in bounded time however many shorter ones keep arriving.

    >>> plan_batches([3, 250, 4, 5], max_tokens=1024, max_inputs=8)
    [[0, 2, 3], [1]]
    >>> next_batch([250, 3, 4, 5], max_tokens=1024, max_inputs=8)
    [0]
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["next_batch", "plan_batches"]


# widths up to which padding is always accepted: a 32-wide attention row costs ~1.4% of a
# token's matmuls in all-MiniLM-L6-v2 (32 keys * 4 * 384 against 2 * 1.77M FLOP a layer)
SHORT = 32


def plan_batches(lengths: Sequence[int], *, max_tokens: int, max_inputs: int) -> list[list[int]]:
    """Indices into ``lengths`` grouped into batches of similar length, shortest first.

    Every index appears once. An input longer than ``max_tokens`` gets a batch of its own
    (the caller bounds input lengths; this never drops one).
    """
    if max_tokens <= 0 or max_inputs <= 0:
        raise ValueError("max_tokens and max_inputs must be positive")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        # sorted ascending, so the newcomer is the longest: it sets the padded width
        n, width = len(current) + 1, lengths[i]
        fits = n <= max_inputs and n * width <= max_tokens
        cheap = width <= SHORT or n * width <= 2 * (real + width)
        if current and not (fits and cheap):
            batches.append(current)
            current, real = [], 0
        current.append(i)
        real += width
    if current:
        batches.append(current)
    return batches


def next_batch(lengths: Sequence[int], *, max_tokens: int, max_inputs: int) -> list[int]:
    """The batch to run now: of ``plan_batches``, the one holding index 0.

    ``lengths`` must be in arrival order (index 0 is the oldest waiting input).
    """
    if not lengths:
        return []
    for batch in plan_batches(lengths, max_tokens=max_tokens, max_inputs=max_inputs):
        if 0 in batch:
            return batch
    raise AssertionError("plan_batches lost an index")  # pragma: no cover
