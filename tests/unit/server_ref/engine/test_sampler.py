"""Sampler: greedy, seeded sampling, top-k/top-p/min-p, logit bias, penalties, logprobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from server_ref.engine.sampler import (
    RowState,
    _apply_token_bitmasks,
    _filter,
    sample,
    unpack_bitmask,
)
from server_ref.engine.types import SamplingParams

VOCAB = 32


@pytest.fixture(autouse=True)
def _fixed_global_rng() -> None:
    torch.manual_seed(0)  # unseeded rows draw from the global generator: keep runs repeatable


def row(output_ids: list[int] | None = None, seed: int | None = None, **params: Any) -> RowState:
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return RowState(SamplingParams(max_tokens=16, **params), output_ids or [], gen)


def random_logits(n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, VOCAB, generator=torch.Generator().manual_seed(seed)) * 3


def draws(logits: torch.Tensor, make_row: Callable[[], RowState], n: int) -> list[int]:
    """``n`` single-row samples, each with a fresh row from ``make_row()``."""
    return [sample(logits.clone(), [make_row()]).token_ids[0] for _ in range(n)]


def test_greedy_takes_the_argmax_of_every_row() -> None:
    logits = random_logits(4)
    result = sample(logits.clone(), [row(temperature=0.0) for _ in range(4)])
    assert result.token_ids == logits.argmax(-1).tolist()
    assert result.logprobs is None


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.0, 50.0])
def test_top_k_1_equals_greedy_at_any_temperature(temperature: float) -> None:
    logits = random_logits(3)
    rows = [row(temperature=temperature, top_k=1) for _ in range(3)]
    for _ in range(5):
        assert sample(logits.clone(), rows).token_ids == logits.argmax(-1).tolist()


def test_same_seed_gives_the_same_tokens_across_calls() -> None:
    flat = torch.zeros(1, VOCAB)
    runs = []
    for _ in range(3):
        seeded = row(seed=1234)  # what the engine builds per request: a fresh generator
        runs.append([sample(flat.clone(), [seeded]).token_ids[0] for _ in range(10)])
    assert runs[0] == runs[1] == runs[2]
    assert len(set(runs[0])) > 1  # the generator advances from call to call


@pytest.mark.parametrize(
    "others",
    [
        [],
        [{"temperature": 0.0}],
        [{"top_p": 0.5}, {"top_k": 3}],
        [{"min_p": 0.2, "seed": 9}, {"temperature": 0.7}],
    ],
)
def test_seeded_row_is_independent_of_the_rest_of_the_batch(others: list[dict[str, Any]]) -> None:
    mine = random_logits(1, seed=3) / 3  # soft: many tokens have real mass
    alone_row = row(seed=42)
    alone = [sample(mine.clone(), [alone_row]).token_ids[0] for _ in range(20)]
    mixed_row = row(seed=42)
    mixed = []
    for i in range(20):
        rows = [row(**o) for o in others] + [mixed_row]
        batch = torch.cat([random_logits(len(others), seed=i), mine])
        mixed.append(sample(batch, rows).token_ids[-1])
    assert mixed == alone


def test_different_seeds_give_different_tokens_on_a_flat_distribution() -> None:
    flat = torch.zeros(1, VOCAB)
    per_seed = [
        tuple(sample(flat.clone(), [r]).token_ids[0] for _ in range(8))
        for r in (row(seed=s) for s in range(20))
    ]
    # 20 sequences of 8 draws from 32 tokens: a collision has probability ~1e-10
    assert len(set(per_seed)) == 20
    assert len({t for seq in per_seed for t in seq}) > VOCAB // 2


def test_tiny_top_p_keeps_only_the_top_token() -> None:
    logits = random_logits(2) / 4  # flat enough that the top token has well under half the mass
    for _ in range(20):
        result = sample(logits.clone(), [row(top_p=1e-6), row(top_p=1e-6, temperature=5.0)])
        assert result.token_ids == logits.argmax(-1).tolist()


@pytest.mark.parametrize("top_p", [5e-324, 1e-46])  # both round to 0.0 in float32
def test_top_p_below_float32_keeps_the_top_token(top_p: float) -> None:
    # found by the OpenAPI fuzzer: a valid top_p removed every token and the engine died on
    # "probability tensor contains either inf, nan or element < 0"
    logits = random_logits(2)
    result = sample(logits.clone(), [row(top_p=top_p), row(top_p=top_p, top_k=3)])
    assert result.token_ids == logits.argmax(-1).tolist()


@pytest.mark.parametrize("temperature", [5e-324, 1e-40, 1e-6])
def test_temperature_near_zero_is_greedy(temperature: float) -> None:
    # found by the OpenAPI fuzzer: logits / 1e-40 overflow float32 to inf, and the
    # probabilities to NaN
    logits = random_logits(3) + torch.tensor([100.0, 0.0, -100.0])[:, None]
    result = sample(logits.clone(), [row(temperature=temperature) for _ in range(3)])
    assert result.token_ids == logits.argmax(-1).tolist()


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05] + [0.0] * (VOCAB - 4)])
    logits = probs.clamp_min(1e-12).log()
    seen = set(draws(logits, lambda: row(top_p=0.7), 300))
    assert seen == {0, 1}  # 0.5 < 0.7 <= 0.5 + 0.3


def test_top_k_draws_only_from_the_k_best() -> None:
    logits = random_logits(1)
    best = set(logits[0].topk(3).indices.tolist())
    assert set(draws(logits, lambda: row(top_k=3, temperature=3.0), 300)) == best


def test_min_p_drops_tokens_below_the_fraction_of_the_top_probability() -> None:
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.1] + [0.0] * (VOCAB - 4)])
    logits = probs.clamp_min(1e-12).log()
    # floor = 0.45 * 0.4 = 0.18: token 3 (0.1) and the zero-mass tail go
    assert set(draws(logits, lambda: row(min_p=0.45), 400)) == {0, 1, 2}
    assert set(draws(logits, lambda: row(min_p=0.9), 50)) == {0}


@pytest.mark.parametrize("other", [{"top_p": 0.9}, {"top_k": 5}])
def test_top_p_one_keeps_the_whole_tail_when_another_row_filters(other: dict[str, Any]) -> None:
    # The lost mass is far too small to see by sampling, so look at the filter itself: float
    # error in cumsum reaches 1.0 long before the end of a real-sized vocabulary.
    logits = torch.randn(2, 49152, generator=torch.Generator().manual_seed(0)) * 8
    filtered = _filter(logits.clone(), [row(**other), row(top_p=1.0)])
    assert torch.isfinite(filtered[1]).all()
    torch.testing.assert_close(filtered[1], logits[1])


def test_logit_bias_plus_100_forces_and_minus_100_bans_a_token() -> None:
    logits = random_logits(2)
    top = int(logits[1].argmax())
    forced = [row(logit_bias=((5, 100.0),)), row(temperature=0.0, logit_bias=((top, -100.0),))]
    for _ in range(10):
        ids = sample(logits.clone(), forced).token_ids
        assert ids[0] == 5
        assert ids[1] == int(logits[1].topk(2).indices[1])  # greedy falls to the runner-up


def test_banned_token_is_never_sampled() -> None:
    flat = torch.zeros(1, VOCAB)
    assert 3 not in draws(flat, lambda: row(logit_bias=((3, -100.0),)), 300)


@pytest.mark.parametrize(
    ("presence", "frequency"), [(0.5, 0.0), (0.0, 0.25), (1.0, 0.5), (-0.5, 0.0)]
)
def test_presence_and_frequency_penalties_lower_repeated_tokens(
    presence: float, frequency: float
) -> None:
    logits = random_logits(1)
    adjusted = logits.clone()
    out = [2, 2, 2, 9, 30]
    sample(
        adjusted,
        [row(out, temperature=0.0, presence_penalty=presence, frequency_penalty=frequency)],
    )
    expected = logits.clone()
    for token, count in {2: 3, 9: 1, 30: 1}.items():
        expected[0, token] -= presence + frequency * count
    torch.testing.assert_close(adjusted, expected)


def test_penalties_are_per_row() -> None:
    logits = random_logits(2)
    adjusted = logits.clone()
    sample(
        adjusted,
        [row([1, 1], temperature=0.0, frequency_penalty=1.0), row([1, 1], temperature=0.0)],
    )
    assert adjusted[0, 1] == pytest.approx(float(logits[0, 1]) - 2.0)
    torch.testing.assert_close(adjusted[1], logits[1])


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_logprobs_are_the_log_softmax_of_the_adjusted_logits(temperature: float) -> None:
    logits = random_logits(2)
    rows = [
        row(
            [4, 4],
            temperature=temperature,
            logprobs=2,
            frequency_penalty=0.5,
            logit_bias=((7, 3.0),),
        ),
        row(temperature=temperature),  # asks for none: still gets a row
    ]
    result = sample(logits.clone(), rows)
    assert result.logprobs is not None and result.logprobs.shape == (2, VOCAB)
    adjusted = logits.clone()
    adjusted[0, 4] -= 1.0
    adjusted[0, 7] += 3.0
    torch.testing.assert_close(result.logprobs, adjusted.log_softmax(-1))
    assert torch.allclose(result.logprobs.exp().sum(-1), torch.ones(2))


# --- grammar bitmasks ---------------------------------------------------------------------------


def bitmask_for(allowed: list[int], vocab: int = VOCAB) -> torch.Tensor:
    """The int32 bitmask row (llguidance's layout) allowing exactly ``allowed``."""
    words = [0] * ((vocab + 31) // 32)
    for t in allowed:
        words[t // 32] |= 1 << (t % 32)
    # bit 31 set means a negative int32
    return torch.tensor([w - (1 << 32) if w >= 1 << 31 else w for w in words], dtype=torch.int32)


def test_unpack_bitmask_matches_the_bit_layout_including_the_sign_bit() -> None:
    rng = torch.Generator().manual_seed(0)
    allowed = [sorted(set(torch.randint(0, 100, (30,), generator=rng).tolist())) for _ in range(3)]
    allowed[1] += [31, 63]  # sign bits of words 0 and 1
    masks = torch.stack([bitmask_for(a, 100) for a in allowed])
    unpacked = unpack_bitmask(masks, 100)
    assert unpacked.shape == (3, 100)
    for row, a in zip(unpacked, allowed, strict=True):
        assert row.nonzero().flatten().tolist() == sorted(set(a))
    with pytest.raises(ValueError, match="cannot cover"):
        unpack_bitmask(masks, 129)


def mixed_rows(constrain: bool) -> list[RowState]:
    """Greedy, seeded and unseeded sampled rows with penalties and logprobs; with ``constrain``
    rows 1, 3 and 5 also get a grammar bitmask."""
    rows = [
        row([1, 1, 2], temperature=0.0, logprobs=3, frequency_penalty=0.5),
        row(seed=5, temperature=0.9, top_p=0.8),
        row(seed=7, temperature=1.3, top_k=6, logprobs=2, logit_bias=((4, 2.0),)),
        row(temperature=0.0, presence_penalty=1.0),
        row(seed=11, min_p=0.05, logprobs=0),
        row(temperature=1.1),  # unseeded: draws from the global generator
        row(top_p=0.9),  # unseeded too, after a constrained unseeded row
    ]
    if constrain:
        rows[1].token_bitmask = bitmask_for([3, 17, 30])
        rows[3].token_bitmask = bitmask_for([0, 9])
        rows[5].token_bitmask = bitmask_for([8, 12, 13])
    return rows


def test_unconstrained_rows_are_bit_identical_whatever_other_rows_are_constrained() -> None:
    free, masked = mixed_rows(False), mixed_rows(True)
    for step in range(25):
        logits = random_logits(7, seed=step)
        plain_logits, mixed_logits = logits.clone(), logits.clone()
        torch.manual_seed(step)
        plain = sample(plain_logits, free)
        torch.manual_seed(step)
        mixed = sample(mixed_logits, masked)
        assert plain.logprobs is not None and mixed.logprobs is not None
        for i in (0, 2, 4, 6):
            assert plain.token_ids[i] == mixed.token_ids[i]
            assert torch.equal(plain.logprobs[i], mixed.logprobs[i])
            assert torch.equal(plain_logits[i], mixed_logits[i])
        assert mixed.token_ids[1] in (3, 17, 30) and mixed.token_ids[3] in (0, 9)
        assert mixed.token_ids[5] in (8, 12, 13)
        for rows, result in ((free, plain), (masked, mixed)):
            for r, t in zip(rows, result.token_ids, strict=True):
                r.output_ids.append(t)  # penalties see each run's own history


def test_a_constrained_row_samples_only_allowed_tokens_in_proportion() -> None:
    logits = torch.zeros(1, VOCAB)
    logits[0, 5] = 2.0  # the favourite is not allowed
    seen = draws(
        logits, lambda: RowState(SamplingParams(max_tokens=1), [], None, bitmask_for([1, 2])), 400
    )
    assert set(seen) == {1, 2}
    assert 150 < seen.count(1) < 250  # equal logits: about half each
    greedy = RowState(SamplingParams(max_tokens=1, temperature=0.0), [], None, bitmask_for([7, 9]))
    logits[0, 9] = 1.0
    assert sample(logits.clone(), [greedy]).token_ids == [9]


def test_constrained_logprobs_are_those_of_the_masked_distribution() -> None:
    logits = random_logits(2)
    allowed = [2, 3, 20, 31]
    rows = [
        RowState(SamplingParams(max_tokens=1, logprobs=5), [], None, bitmask_for(allowed)),
        row(logprobs=1),
    ]
    result = sample(logits.clone(), rows)
    assert result.logprobs is not None
    expected = torch.full((VOCAB,), float("-inf"))
    expected[allowed] = logits[0, allowed].log_softmax(-1)
    torch.testing.assert_close(result.logprobs[0], expected)
    assert result.token_ids[0] in allowed
    torch.testing.assert_close(result.logprobs[1], logits[1].log_softmax(-1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_masks_leave_allowed_logits_exactly_as_they_were(dtype: torch.dtype) -> None:
    # fp32 logits are masked through their bits, others with masked_fill_: the same result
    logits = random_logits(3).to(dtype)
    logits[0, 4] = float("inf")  # an allowed +inf and a banned NaN stay as what they mean
    logits[0, 5] = float("nan")
    allowed = [[1, 4, 31], [0, 16, 30], list(range(VOCAB))]
    rows = [RowState(SamplingParams(max_tokens=1), [], None, bitmask_for(a)) for a in allowed]
    masked = logits.clone()
    _apply_token_bitmasks(masked, rows)
    expected = torch.full_like(logits, float("-inf"))
    for i, a in enumerate(allowed):
        expected[i, a] = logits[i, a]
    assert torch.equal(masked, expected)
