"""A Llama-family decoder in plain PyTorch, reading weights as GGUF stores them.

Reads top-down: config, RMSNorm, rotary embedding, attention, MLP, block, model. The KV cache
is an explicit paged object (``attention_meta.KVCache``); which cache slots a step reads and
writes is described by ``attention_meta.BatchMeta``, built by the runner. One forward pass
serves prefill, chunked prefill and batched decode alike: the new tokens of all sequences are
flattened into one ``[N]`` batch for the matmuls, and attention runs per ``AttnGroup``.
Weights are loaded by ``server_ref.loading.llama_weights``.

RoPE layout: llama.cpp's converter permutes Q/K weights so that rotation pairs are adjacent
dimensions ``(2i, 2i+1)`` (ggml's "normal" rope mode), so that is what we rotate here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from server_ref.models.attention_meta import (
    KEY_WIDTH_MULTIPLE,
    AttnGroup,
    AttnPlan,
    BatchMeta,
    KVCache,
    padded_rows,
)
from server_ref.models.int4 import Int4Linear
from server_ref.models.prepack import PackedLinear


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a Llama-family decoder (``loading.gguf.read_config`` reads them)."""

    arch: str
    name: str
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    norm_eps: float
    rope_base: float
    context_length: int
    tie_embeddings: bool

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        if x.dtype == w.dtype == torch.float32:  # no conversions (each a call at batch 1)
            return F.rms_norm(x, w.shape, w, self.eps)
        # normalise in fp32 even when running bf16, as llama.cpp does
        return F.rms_norm(x.float(), w.shape, w.float(), self.eps).to(x.dtype)


def rope_table(head_dim: int, max_pos: int, base: float) -> Tensor:
    """Rotations e^(i * pos * theta_j) as complex64, shape [max_pos, head_dim // 2]."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(max_pos, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64)


def apply_rope(x: Tensor, rot: Tensor) -> Tensor:
    """Rotate adjacent pairs (x[2j], x[2j+1]) as complex numbers. x: [N, heads, D]; rot:
    [N, 1, D/2] complex. One complex multiply: the arithmetic of x0*c - x1*s, x0*s + x1*c."""
    n, h, d = x.shape
    fp32 = x.dtype == torch.float32
    xc = torch.view_as_complex((x if fp32 else x.float()).view(n, h, d // 2, 2))  # [N, H, D/2]
    y = torch.view_as_real(xc * rot).view(n, h, d)
    return y if fp32 else y.to(x.dtype)


class Attention(nn.Module):
    """Q, K and V come from one fused projection (one matmul instead of three; the GGUF's
    three weights are concatenated at load). RoPE rotates Q and K together."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wqkv = nn.Linear(
            cfg.dim, (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim, bias=False
        )
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def _qkv(self, x: Tensor, rot: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: [N, dim] -> q [N, H, D], k [N, KV, D] (both rotated), v [N, KV, D]."""
        n, h, kv = x.shape[0], self.n_heads, self.n_kv
        qk, v = self.wqkv(x).view(n, h + 2 * kv, self.hd).split_with_sizes([h + kv, kv], 1)
        q, k = apply_rope(qk, rot).split_with_sizes([h, kv], 1)
        return q, k, v

    def forward(
        self,
        x: Tensor,
        rot: Tensor,
        layer: int,
        cache: KVCache,
        meta: BatchMeta,
        plans: list[AttnPlan],
    ) -> Tensor:
        """``plans[i]``: how group i gathers its keys and masks them (``Llama.attention_plan``)."""
        n = x.shape[0]
        q, k, v = self._qkv(x, rot)  # [N, H, D], [N, KV, D], [N, KV, D]
        cache.k_by_slot[layer].index_copy_(0, meta.slot_mapping, k)
        cache.v_by_slot[layer].index_copy_(0, meta.slot_mapping, v)
        if len(meta.groups) == 1:  # every decode step, most prefill steps
            o = self.attend(q, meta.groups[0], plans[0], layer)  # [N, KV, H / KV, D]
        else:
            o = q.new_empty(n, self.n_kv, self.n_heads // self.n_kv, self.hd)
            for g, plan in zip(meta.groups, plans, strict=True):
                o[g.rows] = self.attend(q[g.rows], g, plan, layer)
        y: Tensor = self.wo(o.reshape(n, self.n_heads * self.hd))  # [N, dim]
        return y

    def attend(self, q: Tensor, g: AttnGroup, plan: AttnPlan, layer: int) -> Tensor:
        """Attention of one group as two batched matmuls per (kv head, sequence): the query
        rows of the G heads sharing a kv head times that head's keys. q [S * Q, H, D] ->
        [S * Q, KV, H / KV, D] (kv head outer, as H is; possibly a strided view).

        Batch invariance: every number a query row gets here depends on that row and its
        sequence's keys only, not on which other sequences share the step, how the prompt was
        chunked or whether its first blocks came from the prefix cache. The fused SDPA kernel
        does not promise that (its last bits move with the batch size), and neither does a
        plain matmul: the BLAS sums a row differently when the row count is not a multiple of
        4 and when the reduction length changes. So query rows are padded to a multiple of 4,
        key widths to a multiple of 64 (masked keys add exact zeros, in whole vectors), and
        probabilities times values is summed in fixed 64-key slices. Measured bit-exact over
        hundreds of random row counts, widths and batch sizes. With it a greedy stream decodes
        the same tokens batched as alone, also with bf16 matmul inputs, which turn any
        last-bit difference into a 0.4% one. A lone decode under ``Llama.lone_decode`` skips
        all of that (``plan.invariant`` is False): its exact keys, unpadded rows, one bmm.
        """
        s, ql, w = g.n_seqs, g.q_len, plan.width
        kv, d = self.n_kv, self.hd
        heads = self.n_heads // kv
        b = kv * s
        kg = plan.keys[layer].index_select(0, plan.rows).view(b, w, d)  # [KV*S, W, D]
        vg = plan.values[layer].index_select(0, plan.rows)  # [KV*S*W/unit, unit*D]
        rows = heads * ql  # row (g, q): head g of the kv group at query q
        padded = padded_rows(rows) if plan.invariant else rows
        if ql == 1:  # decoding: [S, H, D] -> [KV, S, heads, D], no copy before the padding
            qb = q.view(s, kv, heads, d).transpose(0, 1)
        else:
            qb = q.view(s, ql, kv, heads, d).permute(2, 0, 3, 1, 4).reshape(kv, s, rows, d)
        if padded > rows:
            qb = F.pad(qb, (0, 0, 0, padded - rows))  # zero queries, results dropped
        qb = qb.reshape(b, padded, d)
        scores = torch.baddbmm(plan.bias, qb, kg.transpose(1, 2), alpha=d**-0.5)  # [KV*S, R, W]
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
        if probs.dtype != vg.dtype:
            probs = probs.to(vg.dtype)
        c = KEY_WIDTH_MULTIPLE
        if plan.invariant and w % c == 0:
            slices = probs.view(b, padded, w // c, c).transpose(1, 2).reshape(-1, padded, c)
            o = torch.bmm(slices, vg.view(-1, c, d)).view(b, w // c, padded, d).sum(1)
        else:  # a lone decode's exact width, or one the runner did not pad
            o = torch.bmm(probs, vg.view(b, w, d))
        o = o.view(kv, s, padded, d)
        if padded > rows:
            o = o[:, :, :rows]  # [KV, S, rows, D]
        if ql == 1:  # a view; the caller's reshape for the output projection copies once
            return o.transpose(0, 1)
        return o.reshape(kv, s, heads, ql, d).permute(1, 3, 0, 2, 4).reshape(s * ql, kv, heads, d)

    def forward_full(self, x: Tensor, rot: Tensor) -> Tensor:
        """Cache-free causal attention over whole sequences. x: [B, T, dim]."""
        b, t, _ = x.shape
        q, k, v = self._qkv(x.reshape(b * t, -1), rot)
        q = q.view(b, t, self.n_heads, self.hd).transpose(1, 2)  # [B, H, T, D]
        k = k.view(b, t, self.n_kv, self.hd).transpose(1, 2)  # [B, KV, T, D]
        v = v.view(b, t, self.n_kv, self.hd).transpose(1, 2)  # [B, KV, T, D]
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        y: Tensor = self.wo(o.transpose(1, 2).reshape(b, t, self.n_heads * self.hd))  # [B, T, dim]
        return y


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), gate and up as one fused projection."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ffn = cfg.ffn_dim
        self.gate_up = nn.Linear(cfg.dim, 2 * cfg.ffn_dim, bias=False)
        self.down = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).split(self.ffn, dim=-1)
        y: Tensor = self.down(F.silu(gate) * up)
        return y


class Block(nn.Module):
    """Pre-norm residual block: x + attention(norm(x)), then that + mlp(norm(that))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(
        self,
        x: Tensor,
        rot: Tensor,
        layer: int,
        cache: KVCache,
        meta: BatchMeta,
        plans: list[AttnPlan],
    ) -> Tensor:
        """A cached step of layer ``layer``. x: [N, dim] -> [N, dim]."""
        h = x + self.attn(self.attn_norm(x), rot, layer, cache, meta, plans)
        out: Tensor = h + self.mlp(self.ffn_norm(h))
        return out

    def forward_full(self, x: Tensor, rot: Tensor) -> Tensor:
        """Cache-free and causal. x: [B, T, dim] -> [B, T, dim]."""
        h = x + self.attn.forward_full(self.attn_norm(x), rot)
        out: Tensor = h + self.mlp(self.ffn_norm(h))
        return out


class Llama(nn.Module):
    """The decoder. ``forward`` runs a cached step; ``forward_full`` a cache-free pass."""

    rope: Tensor  # [max_pos, head_dim / 2] complex64, on the model's device
    blocks: Sequence[Block]  # an nn.ModuleList at run time, typed as what it holds

    def __init__(self, cfg: ModelConfig, max_positions: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = cast(Sequence[Block], nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers)))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head: nn.Module = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        # a plain attribute, not a buffer: Module.to(dtype) would cast it to a real dtype
        self.rope = rope_table(cfg.head_dim, max_positions or cfg.context_length, cfg.rope_base)
        # a step that decodes a single sequence attends over exactly its keys, without the
        # padding that keeps a sequence's numbers the same alone as batched (Attention.attend):
        # faster, and the right trade only where batches break that anyway (--int4 auto)
        self.lone_decode = False

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.weight.dtype

    @property
    def matmul_dtype(self) -> torch.dtype:
        """The dtype the blocks' matmuls run in (differs from ``dtype`` in mixed precision)."""
        wqkv = self.blocks[0].attn.wqkv
        return wqkv.matmul_dtype if isinstance(wqkv, PackedLinear | Int4Linear) else self.dtype

    def new_cache(self, num_blocks: int, block_size: int) -> KVCache:
        """A zeroed paged KV cache for this model, on its device and in its dtype."""
        cfg = self.cfg
        shape = (cfg.n_layers, cfg.n_kv_heads, num_blocks * block_size, cfg.head_dim)
        return KVCache(
            torch.zeros(shape, device=self.device, dtype=self.dtype),
            torch.zeros(shape, device=self.device, dtype=self.dtype),
            block_size,
        )

    def forward(self, tokens: Tensor, cache: KVCache, meta: BatchMeta) -> Tensor:
        """tokens: [N] new tokens of all sequences -> logits [M, vocab] (fp32) at logits_rows."""
        rot = self.rope[meta.positions[:, None]]  # [N, 1, D/2]
        h = self.embed(tokens)  # [N, dim]
        plans = [self.attention_plan(g, cache) for g in meta.groups]
        for i, blk in enumerate(self.blocks):
            h = blk(h, rot, i, cache, meta, plans)
        h = self.norm(h[meta.logits_rows])  # [M, dim]
        logits: Tensor = self.lm_head(h)
        return logits.float()  # [M, vocab]

    def attention_plan(self, g: AttnGroup, cache: KVCache) -> AttnPlan:
        """Built once per step for each group and shared by all layers (inside the step, so a
        captured CUDA graph rebuilds it from its static inputs)."""
        lone = self.lone_decode and g.n_seqs == 1 and g.q_len == 1
        if lone:  # its keys exactly, all visible: no padding, no mask (a CPU mode: no sync)
            key_slots = g.key_slots[:, : int(g.mask.sum())]
            bias = torch.zeros((1, 1, 1), dtype=self.dtype, device=g.mask.device)
        else:
            key_slots, bias = g.key_slots, self._mask_bias(g)
        # which rows of a layer's cache, viewed [KV * units, unit * D], hold the keys: whole
        # blocks when the width allows (fewer, longer rows to copy), else single slots
        w, bs = key_slots.shape[1], cache.block_size
        unit = bs if w % bs == 0 else 1
        ids = key_slots[:, ::bs].reshape(-1) // bs if unit == bs else key_slots.reshape(-1)
        per_head = cache.k.shape[2] // unit
        heads_base = torch.arange(self.cfg.n_kv_heads, device=ids.device)[:, None] * per_head
        rows = (heads_base + ids[None]).reshape(-1)
        layers, row = cache.k.shape[0], unit * cache.k.shape[3]
        keys, values = cache.k.view(layers, -1, row), cache.v.view(layers, -1, row)
        return AttnPlan(bias, rows, unit, keys.unbind(0), values.unbind(0), w, not lone)

    def _mask_bias(self, g: AttnGroup) -> Tensor:
        """The mask as an additive bias: [KV*S, 1, W] for one query per sequence, else
        [1 or KV*S, R, W] with R the padded query rows, ordered (head, query)."""
        s, ql, w = g.n_seqs, g.q_len, g.key_slots.shape[1]
        kv, heads = self.cfg.n_kv_heads, self.cfg.n_heads // self.cfg.n_kv_heads
        zero = torch.zeros((), dtype=self.dtype, device=g.mask.device)
        bias = zero.masked_fill(~g.mask.view(s, ql, w), float("-inf"))  # [S, Q, W]
        if ql == 1:
            return bias.view(1, s, 1, w).expand(kv, -1, -1, -1).reshape(kv * s, 1, w)
        bias = bias[:, None].expand(s, heads, ql, w).reshape(s, heads * ql, w)
        bias = F.pad(bias, (0, 0, 0, padded_rows(heads * ql) - heads * ql))
        if s > 1:
            bias = bias[None].expand(kv, -1, -1, -1).reshape(kv * s, -1, w)
        return bias

    def forward_full(self, tokens: Tensor) -> Tensor:
        """tokens: [B, T] -> logits [B, T, vocab] (fp32), causal, no cache."""
        b, t = tokens.shape
        pos = torch.arange(t, device=tokens.device).repeat(b)  # [B*T]
        rot = self.rope[pos[:, None]]  # [B*T, 1, D/2]
        h = self.embed(tokens)  # [B, T, dim]
        for blk in self.blocks:
            h = blk.forward_full(h, rot)
        logits: Tensor = self.lm_head(self.norm(h))
        return logits.float()
