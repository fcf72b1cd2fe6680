"""The bf16 output head: every logit within its bound, the ones that can win exact."""

from __future__ import annotations

import pytest
import torch

from server_ref.models.output_head import RescoredHead

pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN"
)


def _head(vocab: int = 3000, dim: int = 576, seed: int = 0) -> tuple[RescoredHead, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(vocab, dim, generator=g) * 0.05
    return RescoredHead(weight), weight


def _inputs(rows: int, dim: int = 576, seed: int = 1) -> torch.Tensor:
    # hidden states of a normed model: a few large channels, as real ones have
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, dim, generator=g)
    x[:, :4] *= 20
    return x


def test_logits_are_within_the_bound_and_the_top_ones_exact() -> None:
    head, weight = _head()
    x = _inputs(8)
    got = head(x)
    exact = x.double() @ weight.double().T
    assert got.dtype == torch.float32 and got.shape == (8, 3000)
    bound = head.bound(x, exact.abs().amax(1).float())
    err = (got.double() - exact).abs()
    assert bool((err <= bound[:, None].double()).all())
    assert bool((err > 1e-6).any())  # the bulk really is bf16, not an fp32 head in disguise
    # every token whose bf16 logit is within twice its row's bound of the row's largest (all
    # that can be the largest) is rescored to the exact logit; the others keep the bf16 one
    approx = head.approx(x)
    window = 2 * head.bound(x, approx.abs().amax(1))
    near = approx >= (approx.amax(1) - window)[:, None]
    assert 8 <= int(near.sum()) < 8 * 100
    assert torch.equal(got[near], exact[near].float())
    assert torch.equal(got[~near], approx[~near])
    assert torch.equal(got.argmax(1), exact.argmax(1))


def test_greedy_picks_the_larger_of_two_logits_bf16_would_tie() -> None:
    # two tokens whose logits differ by less than bf16's step near 20: a bf16 head rounds them
    # into one value and argmax takes the lower id; the rescored head keeps them apart
    dim = 64
    weight = torch.randn(50, dim, generator=torch.Generator().manual_seed(2)) * 0.01
    x = torch.ones(1, dim)
    weight[7] = 20.0 / dim
    weight[3] = (20.0 - 0.02) / dim
    head = RescoredHead(weight)
    plain = (x.bfloat16() @ weight.bfloat16().T).float()
    assert plain[0, 3] == plain[0, 7]  # the tie the bf16 head alone would make
    got = head(x)
    assert int(got.argmax()) == 7
    assert float(got[0, 7] - got[0, 3]) == pytest.approx(0.02, abs=1e-5)


def test_a_row_gets_the_same_logits_alone_as_in_a_batch() -> None:
    head, _ = _head(seed=3)
    x = _inputs(9, seed=4)
    whole = head(x)
    for rows in (1, 2, 5, 9):
        assert torch.equal(head(x[:rows]), whole[:rows])
    assert torch.equal(head(x[0]), whole[0])  # a 1-D input keeps its shape
    assert "exact top candidates" in repr(head)


def test_no_rows_give_no_logits() -> None:
    # a step that only prefills part of a prompt asks the head for nothing
    head, _ = _head()
    assert head(torch.zeros(0, 576)).shape == (0, 3000)
