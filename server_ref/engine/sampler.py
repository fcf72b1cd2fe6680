"""Batched next-token sampling: grammar masks, penalties, logit bias, temperature, top-k/p,
min-p, seeds.

Every row has its own parameters. Greedy rows (temperature 0) take the argmax; sampled rows
draw with their own ``torch.Generator`` when a seed was given, so the same seed and parameters
give the same tokens whatever else shares the batch.

A row with a ``token_bitmask`` (from ``constraints.GrammarCompiler``) can only get an allowed
token: the masks of all such rows are unpacked and applied to the logits in one op, before
anything else, and rows without one are not touched. As in vLLM, which applies the grammar
bitmask to the logits before its sampler, the returned logprobs are those of the constrained
distribution: disallowed tokens get -inf and the allowed ones share all the mass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from server_ref.engine.types import SamplingParams, TokenLogprob

# Temperatures below this sample greedily, as in vLLM (_SAMPLING_EPS): dividing float32 logits
# by 1e-40 gives inf and NaN probabilities, and a distribution that sharp is the argmax anyway.
GREEDY_BELOW = 1e-5


@dataclass
class RowState:
    """What the sampler needs to know about one sequence."""

    params: SamplingParams
    output_ids: list[int]
    generator: torch.Generator | None
    # int32 [ceil(V / 32)]: bit t % 32 of word t // 32 set <=> token t allowed (llguidance's
    # and xgrammar's layout); None: unconstrained
    token_bitmask: Tensor | None = None


@dataclass
class SampleResult:
    token_ids: list[int]
    logprobs: Tensor | None  # [B, V] log-softmax of the adjusted logits, when any row asked


def _apply_token_bitmasks(logits: Tensor, rows: list[RowState]) -> None:
    """-inf for every token a row's grammar does not allow, in one op over the constrained
    rows (index_select + index_copy_ measured faster than ``logits[index] = ...`` on CPU)."""
    constrained = [i for i, r in enumerate(rows) if r.token_bitmask is not None]
    if not constrained:
        return
    masks = torch.stack([r.token_bitmask for r in rows if r.token_bitmask is not None])
    allowed = unpack_bitmask(masks.to(logits.device), logits.shape[1])  # [C, V]
    if len(constrained) == len(rows):
        _ban(logits, allowed)
        return
    index = torch.tensor(constrained, device=logits.device)
    logits.index_copy_(0, index, _ban(logits.index_select(0, index), allowed))


# float32 -inf (0xFF800000) as an int32, and the value of each bit of an int32 word
_NEG_INF_BITS = -8388608
_BIT_VALUES = [1 << b if b < 31 else -(1 << 31) for b in range(32)]


def _ban(x: Tensor, allowed: Tensor) -> Tensor:
    """``x`` with -inf where ``allowed`` is False, in place. An fp32 tensor is changed through
    its bits (keep them where allowed, write -inf's elsewhere): on CPU ``masked_fill_`` is a
    scalar loop, about 3 ms for 16 x 49152 where the bit operations take 0.4 ms."""
    if x.dtype != torch.float32:
        return x.masked_fill_(allowed.logical_not(), -torch.inf)
    keep = allowed.to(torch.int32).neg_()  # -1: every bit kept; 0: none
    neg_inf = torch.tensor(_NEG_INF_BITS, dtype=torch.int32, device=x.device)
    x.view(torch.int32).bitwise_and_(keep).bitwise_or_(keep.bitwise_not_().bitwise_and_(neg_inf))
    return x


def unpack_bitmask(bitmask: Tensor, vocab: int) -> Tensor:
    """int32 [N, W] bitmask -> bool [N, vocab]; works on any device.

    >>> unpack_bitmask(torch.tensor([[0b101]], dtype=torch.int32), 4).tolist()
    [[True, False, True, False]]
    """
    if bitmask.shape[-1] * 32 < vocab:
        raise ValueError(f"a bitmask of {bitmask.shape[-1]} words cannot cover {vocab} tokens")
    # AND with tensor operands: shifting and masking with a Python 1 takes a slow scalar path
    values = torch.tensor(_BIT_VALUES, dtype=torch.int32, device=bitmask.device)
    bits = bitmask.unsqueeze(-1) & values  # [N, W, 32]
    return bits.ne_(0).flatten(1)[:, :vocab]


def _apply_penalties_and_bias(logits: Tensor, rows: list[RowState]) -> None:
    vocab = logits.shape[1]
    for i, r in enumerate(rows):
        p = r.params
        if r.output_ids and (p.presence_penalty or p.frequency_penalty):
            counts = torch.bincount(
                torch.tensor(r.output_ids, device=logits.device), minlength=vocab
            )[:vocab].to(logits.dtype)
            logits[i] -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0)
        if p.logit_bias:
            ids = torch.tensor([t for t, _ in p.logit_bias], device=logits.device)
            bias = torch.tensor([b for _, b in p.logit_bias], device=logits.device)
            logits[i].index_add_(0, ids, bias.to(logits.dtype))


def _filter(logits: Tensor, rows: list[RowState]) -> Tensor:
    """Temperature, then top-k / top-p / min-p as -inf masks. logits: [B, V] -> [B, V]."""
    temps = torch.tensor([r.params.temperature for r in rows], device=logits.device)
    logits = logits / temps[:, None]
    top_k = [r.params.top_k for r in rows]
    top_p = [r.params.top_p for r in rows]
    min_p = [r.params.min_p for r in rows]
    if any(k > 0 for k in top_k) or any(p < 1.0 for p in top_p):
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # [B, V]
        remove = torch.zeros_like(sorted_logits, dtype=torch.bool)
        vocab = logits.shape[1]
        ks = torch.tensor([k if 0 < k < vocab else vocab for k in top_k], device=logits.device)
        remove |= torch.arange(vocab, device=logits.device)[None, :] >= ks[:, None]
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass *before* it already reaches top_p (keeps at least one);
        # rows with top_p == 1 are left alone: float error lets the cumsum reach 1.0 early
        before = probs.cumsum(-1) - probs
        ps = torch.tensor(top_p, device=logits.device)[:, None]
        remove |= (before >= ps) & (ps < 1.0)
        # the best token always stays: a top_p under float32's smallest number (5e-324 is a
        # valid request) rounds to 0 and would otherwise remove every token
        remove[:, 0] = False
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.empty_like(logits).scatter_(1, order, sorted_logits)
    if any(m > 0 for m in min_p):
        probs = logits.softmax(-1)
        floor = (
            probs.max(-1, keepdim=True).values * torch.tensor(min_p, device=logits.device)[:, None]
        )
        logits = logits.masked_fill(probs < floor, float("-inf"))
    return logits


# The runner's logits are inference tensors (it runs under torch.inference_mode()); in-place
# penalties and bias on them are only allowed inside inference mode too.
@torch.inference_mode()
def sample(logits: Tensor, rows: list[RowState]) -> SampleResult:
    """logits: [B, V] fp32 (modified in place) -> one token per row."""
    _apply_token_bitmasks(logits, rows)
    _apply_penalties_and_bias(logits, rows)
    want_logprobs = any(r.params.logprobs is not None for r in rows)
    logprobs = logits.log_softmax(-1) if want_logprobs else None
    greedy = [i for i, r in enumerate(rows) if r.params.temperature < GREEDY_BELOW]
    sampled = [i for i, r in enumerate(rows) if r.params.temperature >= GREEDY_BELOW]
    out = [0] * len(rows)
    if greedy:
        for i, t in zip(greedy, logits[greedy].argmax(-1).tolist(), strict=True):
            out[i] = t
    if sampled:
        probs = _filter(logits[sampled], [rows[i] for i in sampled]).softmax(-1)
        for j, i in enumerate(sampled):
            out[i] = int(torch.multinomial(probs[j], 1, generator=rows[i].generator).item())
    return SampleResult(out, logprobs)


def token_logprob(
    token_bytes: Callable[[int], bytes], row: Tensor, token: int, k: int
) -> TokenLogprob:
    """The sampled token's logprob and the ``k`` most likely, from one row of ``logprobs``."""

    def piece(t: int) -> tuple[str, bytes]:
        b = token_bytes(t)
        return b.decode("utf-8", errors="replace"), b

    top: tuple[tuple[int, str, bytes, float], ...] = ()
    if k > 0:
        vals, ids = row.topk(k)
        top = tuple((i, *piece(i), v) for i, v in zip(ids.tolist(), vals.tolist(), strict=True))
    text, raw = piece(token)
    return TokenLogprob(token, text, raw, float(row[token]), top)
