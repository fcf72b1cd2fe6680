"""A BERT encoder for sentence embeddings in plain PyTorch (all-MiniLM-L6-v2 and its kin).

Reads top-down: config, embeddings, self-attention, feed-forward, layer, encoder with mean
pooling and L2 normalisation (what sentence-transformers' ``Transformer -> Pooling(mean) ->
Normalize`` pipeline computes). Weights come from a safetensors file through
``loading.bert_weights``, which also fuses the query/key/value projections into one.

Batches come as right-padded ``[B, T]`` id tensors with an attention mask, but only the real
tokens are computed on (``Packing``): activations are ``[N, dim]`` for the N real tokens, and
attention alone lays them out padded, with padded keys masked (SDPA with a boolean mask). So a
text gets the same embedding alone as in a batch with longer texts (up to the last bits of
summation order), and a long text in a batch of short ones costs no padding in the matmuls.
BERT is post-norm: each sub-layer's output is ``LayerNorm(x + sublayer(x))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BertConfig", "Packing", "SentenceBert"]


@dataclass(frozen=True)
class BertConfig:
    """The architecture, as transformers' ``config.json`` of a ``BertModel`` describes it."""

    vocab_size: int
    dim: int  # hidden_size
    n_layers: int
    n_heads: int
    ffn_dim: int  # intermediate_size
    max_positions: int  # max_position_embeddings
    type_vocab_size: int
    norm_eps: float  # layer_norm_eps
    gelu: Literal["none", "tanh"] = "none"  # F.gelu's ``approximate``: "gelu" is the exact erf
    pad_token_id: int = 0

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


@dataclass(frozen=True)
class Packing:
    """Where the real tokens of a right-padded ``[B, T]`` batch sit.

    The model keeps activations as ``[N, dim]``, the ``N`` real tokens only, so the linear
    layers, GELU and LayerNorms (nearly all of the work) never compute on padding; only
    attention, which needs each sequence's tokens side by side, scatters them into a padded
    ``[B, T]`` layout and gathers the result back. ``rows`` is None when nothing is padded
    (then ``N == B * T`` and no copy is made).
    """

    b: int
    t: int
    rows: Tensor | None  # [N] flat index (seq * T + pos) of each real token
    keep: Tensor | None  # [B, 1, 1, T] True for real keys (None: all are real)

    @classmethod
    def of(cls, mask: Tensor) -> Packing:
        """From a ``[B, T]`` mask of 1 for real tokens, 0 for padding."""
        b, t = mask.shape
        real = mask.bool()
        if bool(real.all()):
            return cls(b, t, None, None)
        return cls(b, t, real.view(-1).nonzero().squeeze(1), real[:, None, None, :])

    def pad(self, x: Tensor) -> Tensor:
        """[N, C] -> [B, T, C], zeros at padded positions."""
        if self.rows is None:
            return x.view(self.b, self.t, -1)
        out = x.new_zeros(self.b * self.t, x.shape[1]).index_copy_(0, self.rows, x)
        return out.view(self.b, self.t, -1)

    def unpad(self, x: Tensor) -> Tensor:
        """[B, T, C] -> [N, C], the real tokens only."""
        flat = x.reshape(self.b * self.t, -1)
        return flat if self.rows is None else flat.index_select(0, self.rows)

    def seq_of_token(self, device: torch.device) -> Tensor:
        """[N] which sequence each real token belongs to."""
        if self.rows is None:
            return torch.arange(self.b, device=device).repeat_interleave(self.t)
        return self.rows // self.t

    def pos_of_token(self, device: torch.device) -> Tensor:
        """[N] each real token's position in its sequence."""
        if self.rows is None:
            return torch.arange(self.t, device=device).repeat(self.b)
        return self.rows % self.t


class Embeddings(nn.Module):
    """Word + absolute position + token type (always type 0: one text per input), LayerNorm."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.position = nn.Embedding(cfg.max_positions, cfg.dim)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.dim)
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)

    def forward(self, ids: Tensor, pos: Tensor) -> Tensor:
        """ids, pos [N] -> [N, dim]."""
        h = self.word(ids) + self.position(pos) + self.token_type.weight[0]
        out: Tensor = self.norm(h)
        return out


class SelfAttention(nn.Module):
    """Bidirectional multi-head attention; Q, K and V from one fused projection."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.n_heads, self.hd = cfg.n_heads, cfg.head_dim
        self.wqkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.wo = nn.Linear(cfg.dim, cfg.dim)
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)

    def forward(self, x: Tensor, packing: Packing) -> Tensor:
        """x [N, dim], the real tokens of the batch -> [N, dim]."""
        b, t, h, hd = packing.b, packing.t, self.n_heads, self.hd
        qkv = packing.pad(self.wqkv(x)).view(b, t, 3, h, hd)  # [B, T, 3, H, D]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, D]
        # padded keys are masked out; padded queries attend to real keys and are dropped
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=packing.keep)  # [B, H, T, D]
        o = packing.unpad(o.transpose(1, 2))  # [N, H * D]
        out: Tensor = self.norm(x + self.wo(o))
        return out


class FeedForward(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.gelu = cfg.gelu
        self.up = nn.Linear(cfg.dim, cfg.ffn_dim)
        self.down = nn.Linear(cfg.ffn_dim, cfg.dim)
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.norm(x + self.down(F.gelu(self.up(x), approximate=self.gelu)))
        return out


class Layer(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.ffn = FeedForward(cfg)

    def forward(self, x: Tensor, packing: Packing) -> Tensor:
        out: Tensor = self.ffn(self.attn(x, packing))
        return out


class SentenceBert(nn.Module):
    """The encoder plus mean pooling over real tokens and (optionally) L2 normalisation.

    >>> model = SentenceBert(BertConfig(30522, 384, 6, 12, 1536, 512, 2, 1e-12))  # doctest: +SKIP
    >>> model.embed([[101, 7592, 102], [101, 102]]).shape  # doctest: +SKIP
    torch.Size([2, 384])
    """

    def __init__(self, cfg: BertConfig, normalize: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalize = normalize
        self.embed_tokens = Embeddings(cfg)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.n_layers))

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.word.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.word.weight.dtype

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """ids, mask [B, T] (mask 1 for real tokens, 0 for padding) -> embeddings [B, dim] fp32."""
        packing = Packing.of(mask)
        seq = packing.seq_of_token(ids.device)  # [N]
        flat_ids = ids.reshape(-1) if packing.rows is None else ids.view(-1)[packing.rows]
        h = self.embed_tokens(flat_ids, packing.pos_of_token(ids.device))  # [N, dim]
        for layer in self.layers:
            h = layer(h, packing)
        # mean over each sequence's tokens, in fp32 whatever the model's dtype
        sums = torch.zeros(packing.b, h.shape[1], device=h.device).index_add_(0, seq, h.float())
        counts = torch.bincount(seq, minlength=packing.b).clamp(min=1)[:, None]  # [B, 1]
        pooled = sums / counts  # [B, dim]
        return F.normalize(pooled, p=2.0, dim=-1) if self.normalize else pooled

    @torch.inference_mode()
    def embed(self, batch: Sequence[Sequence[int]]) -> Tensor:
        """Token id lists (special tokens included) -> [len(batch), dim] fp32 on the CPU.

        Right-pads to the longest list. Callers group lists of similar length (see
        ``engine.embedding_batches``) so that little of the batch is padding.
        """
        if not batch or min(len(ids) for ids in batch) == 0:
            raise ValueError("embed needs at least one non-empty list of token ids")
        width = max(len(ids) for ids in batch)
        if width > self.cfg.max_positions:
            raise ValueError(f"{width} tokens exceed the {self.cfg.max_positions} positions")
        ids = torch.full((len(batch), width), self.cfg.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        out: Tensor = self(ids.to(self.device), mask.to(self.device))
        return out.cpu()
