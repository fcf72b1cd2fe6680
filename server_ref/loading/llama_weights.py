"""GGUF weights -> a ``models.llama.Llama`` on its device: the tensor-name mapping and
``build_model``.

GGUF names tensors as gguf-py's ``TENSOR_NAMES`` table says (``blk.{i}.attn_q.weight``,
``token_embd.weight`` ...); the model fuses Q/K/V and gate/up into one projection each, so
those GGUF tensors are renamed and concatenated here. Quantized tensors arrive already
dequantized (``loading.gguf``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import torch
from torch import Tensor, nn

from server_ref.models.int4 import Int4Linear, Int4Weight, int4_supported
from server_ref.models.llama import Llama, ModelConfig, rope_table
from server_ref.models.output_head import RescoredHead
from server_ref.models.prepack import packs_correctly, prepack_linears

W = TypeVar("W")

# GGUF tensor name -> our parameter name, per block and global. Several GGUF tensors that feed
# one fused projection share a name and are concatenated (rows) in the order listed here.
_BLOCK_NAMES = {
    "attn_norm.weight": "attn_norm.weight",
    "attn_q.weight": "attn.wqkv.weight",
    "attn_k.weight": "attn.wqkv.weight",
    "attn_v.weight": "attn.wqkv.weight",
    "attn_output.weight": "attn.wo.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "ffn_gate.weight": "mlp.gate_up.weight",
    "ffn_up.weight": "mlp.gate_up.weight",
    "ffn_down.weight": "mlp.down.weight",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "embed.weight",
    "output_norm.weight": "norm.weight",
    "output.weight": "lm_head.weight",
}


def gguf_to_state_dict(cfg: ModelConfig, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename GGUF tensors to this module's parameter names, concatenating fused ones."""
    sd = _rename(cfg, tensors, torch.cat)
    if cfg.tie_embeddings and "embed.weight" in sd:
        sd["lm_head.weight"] = sd["embed.weight"]
    return sd


def _rename(
    cfg: ModelConfig, tensors: Mapping[str, W], cat: Callable[[list[W]], W]
) -> dict[str, W]:
    """GGUF names -> ours for any kind of weight; ``cat`` stacks the parts of a fused one."""
    sd = {ours: tensors[name] for name, ours in _GLOBAL_NAMES.items() if name in tensors}
    fused: dict[str, list[str]] = {}
    for gguf_name, ours in _BLOCK_NAMES.items():
        fused.setdefault(ours, []).append(gguf_name)
    for i in range(cfg.n_layers):
        for ours, gguf_names in fused.items():
            found = [tensors.get(f"blk.{i}.{n}") for n in gguf_names]
            ts = [t for t in found if t is not None]
            if len(ts) == len(found):  # a fused weight with a part missing counts as missing
                sd[f"blocks.{i}.{ours}"] = ts[0] if len(ts) == 1 else cat(ts)
    return sd


def build_model(
    cfg: ModelConfig,
    tensors: dict[str, Tensor],
    device: torch.device,
    dtype: torch.dtype,
    max_positions: int | None = None,
    prepack: bool = True,
    matmul_dtype: torch.dtype | None = None,
    int4: Mapping[str, Int4Weight] | None = None,
    int4_max_rows: int | None = None,
) -> Llama:
    """Instantiate on the meta device, then load the GGUF weights (no double allocation).

    ``prepack``: on CPU, hand the linear layers' weights to oneDNN in its blocked layout
    (``models.prepack``; 1.5-3x faster matmuls at decode batch sizes). Ignored elsewhere.
    ``matmul_dtype``: with ``prepack``, keep the blocks' weights and matmul inputs in this
    dtype (mixed precision: bf16 matmuls in an fp32 model). Ignored where packing is not
    possible; ``Llama.matmul_dtype`` says what is in effect. In mixed precision the output
    head runs in bf16 too, with its top logits recomputed exactly
    (``models.output_head``), and ``int4`` (the file's 4-bit weights by GGUF name,
    ``loading.gguf.load_int4_weights``) runs the block layers stored in Q4_0 / Q4_1 on
    those 4-bit weights (``models.int4``) instead of bf16 copies: in every step, or with
    ``int4_max_rows`` only in steps of at most that many tokens (bf16 in bigger ones; a
    step that decodes one sequence then also takes ``Llama.lone_decode``'s attention).

    >>> reader = open_gguf("model.gguf")  # doctest: +SKIP
    >>> cfg, tensors = read_config(reader), load_tensors(reader)  # doctest: +SKIP
    >>> model = build_model(cfg, tensors, torch.device("cpu"), torch.float32)  # doctest: +SKIP
    """
    with torch.device("meta"):
        model = Llama(cfg, max_positions)
    sd = gguf_to_state_dict(cfg, tensors)
    expected = set(model.state_dict().keys())
    missing = expected - sd.keys()
    if missing:
        raise ValueError(f"GGUF file lacks weights for: {', '.join(sorted(missing)[:5])}")
    model.load_state_dict({k: sd[k] for k in expected}, assign=True, strict=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    rope = rope_table(cfg.head_dim, max_positions or cfg.context_length, cfg.rope_base)
    model.to(device=device, dtype=dtype)
    model.rope = rope.to(device)
    model.eval().requires_grad_(False)
    if prepack and device.type == "cpu":
        _pack_for_cpu(model, matmul_dtype or dtype, int4 or {}, int4_max_rows)
    return model


def _pack_for_cpu(
    model: Llama,
    matmul_dtype: torch.dtype,
    int4: Mapping[str, Int4Weight],
    int4_max_rows: int | None,
) -> None:
    """oneDNN for the linears; in mixed precision the head becomes a ``RescoredHead`` (else
    it keeps the model's dtype) and the 4-bit block layers ``Int4Linear``s."""
    head = model.lm_head
    assert isinstance(head, nn.Linear)
    mixed = model.dtype == torch.float32 and matmul_dtype == torch.bfloat16
    rescore = mixed and packs_correctly(head, torch.bfloat16)
    prepack_linears(model, matmul_dtype, keep_dtype=[head], exclude=[head] if rescore else [])
    if rescore:
        model.lm_head = RescoredHead(head.weight)
    if mixed and int4:
        swapped = _use_int4(model, _rename(model.cfg, int4, Int4Weight.cat), int4_max_rows)
        # steps of two sizes already run two kernels, so nothing is lost by the faster
        # attention of a lone decode, which batches do not share either
        model.lone_decode = swapped > 0 and int4_max_rows is not None


def _use_int4(model: Llama, weights: Mapping[str, Int4Weight], max_rows: int | None) -> int:
    """Swap the block linears whose weights the file stores in 4 bits for ``Int4Linear``s
    (keeping the layer as their dense fallback when ``max_rows`` is given)."""
    swapped = 0
    for name, module in list(model.named_modules()):
        w = weights.get(f"{name}.weight")
        if name.startswith("blocks.") and w is not None and int4_supported(w):
            parent, _, attr = name.rpartition(".")
            dense = module if max_rows is not None else None
            layer = Int4Linear(w, dense, max_rows or 0)
            setattr(model.get_submodule(parent), attr, layer)
            swapped += 1
    return swapped
