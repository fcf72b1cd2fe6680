"""The output head in bf16, with the logits that can be the argmax recomputed exactly.

The tied output head of a small model is its largest matmul (49,152 x 576 on the default
model: 113 MB a step in fp32, a third of what a mixed-precision decode step reads). In bf16 it
reads half that, but bf16 results have 8 significant bits: logits near 20 come out in steps of
0.125, so two tokens a few hundredths apart round to a tie and greedy decoding picks the
lower id, not the larger logit (why the head stayed fp32 before). torch has no CPU matmul
that takes bf16 inputs and returns fp32.

So the head computes every logit in bf16, bounds the error of each (below), and recomputes
in float64 the logits of every token that could be the largest: those within twice the bound
of the row's largest bf16 logit, typically a handful. The returned row holds those exactly
(rounded once to fp32) and the others within the bound, so greedy picks are those of the
exact head and the logits near the top are exact; the bulk of the vocabulary, which only
sampling at a temperature and the log-softmax's normalizer reach, is within the bound (about
0.1 on the default model). Every row is its own: a lone row gets the numbers it gets in a
batch (the bf16 matmul is a ``PackedLinear``; the rescoring is per logit).

The bound, for weights w and input x (both fp32) rounded to bf16 as ŵ and x̂, K terms summed
in fp32 and the sum rounded to bf16:
``|Σ w x - Σ ŵ x̂| <= ‖w - ŵ‖ ‖x‖ + ‖ŵ‖ ‖x - x̂‖`` (Cauchy-Schwarz), plus fp32 summation
``<= K 2^-24 ‖ŵ‖ ‖x̂‖``, plus the final rounding ``<= 2^-8 |logit|``. Row norms of the weights
enter as their maximum over the vocabulary; the bound is rounded up to a power of two, so the
candidates of a row do not move with the last bits of its norms.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from server_ref.models.prepack import PackedLinear

# relative error of rounding an fp32 sum to bf16 (half an ulp of an 8-bit significand), with
# room for the sum itself being larger than the rounded logit by as much
_BF16_ROUNDING = 2.0**-8 * (1 + 2.0**-7)
# candidates rescored at a time (bounds the float64 copies of their weight rows)
_CHUNK = 4096


class RescoredHead(nn.Module):
    """A bias-free output head: bf16 matmul, exact top candidates (module docstring).

    ``weight``: fp32 [vocab, dim], kept as it is (the tied embedding shares it); a bf16 copy
    is packed for oneDNN. Returns fp32 logits.

    >>> head = RescoredHead(torch.randn(100, 64))  # doctest: +SKIP
    >>> head(torch.randn(2, 64)).argmax(-1)  # doctest: +SKIP
    """

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.weight = weight
        self.approx = PackedLinear(weight, torch.bfloat16)
        rounded = weight.detach().bfloat16().float()
        self.in_features = weight.shape[1]
        self.weight_error = float((weight.detach() - rounded).norm(dim=1).max())
        self.weight_norm = float(rounded.norm(dim=1).max())
        self.summation = self.in_features * 2.0**-24 * 1.01

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, self.in_features).float()
        logits: Tensor = self.approx(rows)  # [M, V], bf16 values in fp32
        shape = (*x.shape[:-1], self.weight.shape[0])
        if rows.shape[0] == 0:  # a step that only prefills samples nothing
            return logits.view(shape)
        # not aminmax: on CPU it took 7-17x as long as amax + amin (1-16 rows of 49,152)
        top, low = logits.amax(dim=1), logits.amin(dim=1)
        window = 2 * self.bound(rows, torch.maximum(top.abs(), low.abs()))
        r, v = (logits >= (top - window)[:, None]).nonzero(as_tuple=True)
        for i in range(0, len(v), _CHUNK):  # typically one chunk of a few dozen
            ri, vi = r[i : i + _CHUNK], v[i : i + _CHUNK]
            exact = (self.weight[vi].double() * rows[ri].double()).sum(-1)
            logits.index_put_((ri, vi), exact.float())
        return logits.view(shape)

    def bound(self, rows: Tensor, largest: Tensor) -> Tensor:
        """[M] an upper bound on |bf16 logit - exact logit| for each row (any token), given
        the largest magnitude of the row's bf16 logits, rounded up to a power of two."""
        rounded = rows.bfloat16().float()
        error = (
            self.weight_error * rows.norm(dim=1)
            + self.weight_norm * (rows - rounded).norm(dim=1)
            + self.summation * self.weight_norm * rounded.norm(dim=1)
            + _BF16_ROUNDING * largest
        )
        return torch.exp2(torch.ceil(torch.log2(error.clamp_min(1e-30))))

    def extra_repr(self) -> str:
        vocab, dim = self.weight.shape
        return f"in_features={dim}, out_features={vocab}, bf16 with exact top candidates"
