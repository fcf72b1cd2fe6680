"""The embedding batch planner: padding bounded, every input once, the oldest served next."""

from __future__ import annotations

import itertools
import random

import pytest

from server_ref.engine.embedding_batches import SHORT, next_batch, plan_batches


@pytest.mark.parametrize("seed", range(20))
def test_batches_cover_every_input_once_within_the_budgets(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(1, 256) for _ in range(rng.randint(1, 300))]
    batches = plan_batches(lengths, max_tokens=2048, max_inputs=32)

    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        width, real = max(lengths[i] for i in batch), sum(lengths[i] for i in batch)
        assert len(batch) <= 32
        assert len(batch) * width <= 2048
        assert width <= SHORT or len(batch) * width <= 2 * real  # padding <= real tokens
    widths = [[lengths[i] for i in b] for b in batches]
    assert all(max(a) <= min(b) for a, b in itertools.pairwise(widths))  # sorted


def test_one_long_input_does_not_pad_the_short_ones() -> None:
    lengths = [12] * 31 + [256]

    # one batch would fit the budgets (32 x 256 = 8192) but be 95% padding
    assert plan_batches(lengths, max_tokens=8192, max_inputs=64) == [list(range(31)), [31]]


def test_similar_lengths_and_short_ones_share_one_batch() -> None:
    assert plan_batches([100, 120, 150, 180], max_tokens=8192, max_inputs=64) == [[0, 1, 2, 3]]
    assert plan_batches([2, 2, 2, SHORT], max_tokens=8192, max_inputs=64) == [[0, 1, 2, 3]]
    assert len(plan_batches([2, 2, 2, SHORT + 1], max_tokens=8192, max_inputs=64)) == 2


def test_the_oldest_input_runs_next_even_among_many_shorter_ones() -> None:
    lengths = [200] + [5] * 100

    assert 0 in next_batch(lengths, max_tokens=1024, max_inputs=16)
    assert next_batch([], max_tokens=1024, max_inputs=16) == []


def test_an_input_over_the_token_budget_still_gets_a_batch() -> None:
    assert plan_batches([10, 5000, 10], max_tokens=100, max_inputs=8) == [[0, 2], [1]]
    assert plan_batches([10, 10, 10], max_tokens=25, max_inputs=8) == [[0, 1], [2]]
    assert plan_batches([10, 10, 10], max_tokens=100, max_inputs=2) == [[0, 1], [2]]


def test_budgets_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        plan_batches([1], max_tokens=0, max_inputs=1)
