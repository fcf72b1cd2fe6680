"""GGUF weights -> a ``models.llama.Llama`` on its device: the tensor-name mapping and
``build_model``.

GGUF names tensors as gguf-py's ``TENSOR_NAMES`` table says (``blk.{i}.attn_q.weight``,
``token_embd.weight`` ...); the model fuses Q/K/V and gate/up into one projection each, so
those GGUF tensors are renamed and concatenated here. Quantized tensors arrive already
dequantized (``loading.gguf``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from server_ref.models.llama import Llama, ModelConfig, rope_table
from server_ref.models.prepack import prepack_linears

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
    sd = {ours: tensors[name] for name, ours in _GLOBAL_NAMES.items() if name in tensors}
    fused: dict[str, list[str]] = {}
    for gguf_name, ours in _BLOCK_NAMES.items():
        fused.setdefault(ours, []).append(gguf_name)
    for i in range(cfg.n_layers):
        for ours, gguf_names in fused.items():
            found = [tensors.get(f"blk.{i}.{n}") for n in gguf_names]
            ts = [t for t in found if t is not None]
            if len(ts) == len(found):  # a fused weight with a part missing counts as missing
                sd[f"blocks.{i}.{ours}"] = ts[0] if len(ts) == 1 else torch.cat(ts)
    if cfg.tie_embeddings:
        sd["lm_head.weight"] = sd["embed.weight"]
    return sd


def build_model(
    cfg: ModelConfig,
    tensors: dict[str, Tensor],
    device: torch.device,
    dtype: torch.dtype,
    max_positions: int | None = None,
    prepack: bool = True,
    matmul_dtype: torch.dtype | None = None,
) -> Llama:
    """Instantiate on the meta device, then load the GGUF weights (no double allocation).

    ``prepack``: on CPU, hand the linear layers' weights to oneDNN in its blocked layout
    (``models.prepack``; 1.5-3x faster matmuls at decode batch sizes). Ignored elsewhere.
    ``matmul_dtype``: with ``prepack``, keep the blocks' weights and matmul inputs in this
    dtype (mixed precision: bf16 matmuls in an fp32 model). The output head keeps the model's
    dtype: bf16 logits would round near-ties into exact ties. Ignored where packing is not
    possible; ``Llama.matmul_dtype`` says what is in effect.

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
    if prepack:
        prepack_linears(model, matmul_dtype, keep_dtype=[model.lm_head])
    return model
