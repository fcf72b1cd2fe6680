"""A sentence-transformers BERT folder -> ``models.bert.SentenceBert`` on a device.

What is read (the layout sentence-transformers saves, and ``registry.pull`` reproduces):

- ``config.json`` (transformers): the architecture -> ``BertConfig``;
- ``model.safetensors``: the weights, through the ``safetensors`` package (never pickle);
- ``sentence_bert_config.json``: ``max_seq_length``, the token limit sentence-transformers
  truncates at (256 for all-MiniLM-L6-v2, below the 512 positions the weights have);
- ``1_Pooling/config.json``: which pooling; only mean pooling is implemented, anything else is
  refused rather than silently computed differently;
- ``modules.json``: whether a ``Normalize`` module follows the pooling.

Weight names are transformers' ``BertModel`` names (an optional ``bert.`` prefix is dropped);
``pooler.*`` (the next-sentence head, unused by sentence-transformers) is ignored, and the
separate query/key/value projections are concatenated into ``wqkv``.

Every problem with the files is a ``ModelFilesError`` naming the file and what is wrong.

    >>> model, info = load_sentence_bert(path, torch.device("cpu"), torch.float32)  # doctest: +SKIP
    >>> info.max_tokens, info.dimensions
    (256, 384)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from server_ref.models.bert import BertConfig, SentenceBert
from server_ref.models.prepack import prepack_linears

__all__ = ["ModelFilesError", "SentenceConfig", "load_sentence_bert", "read_bert_config"]

_GELU = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}

# transformers' per-layer names -> ours; the q/k/v triples are fused in this order
_LAYER_NAMES = {
    "attention.self.query": "attn.wqkv",
    "attention.self.key": "attn.wqkv",
    "attention.self.value": "attn.wqkv",
    "attention.output.dense": "attn.wo",
    "attention.output.LayerNorm": "attn.norm",
    "intermediate.dense": "ffn.up",
    "output.dense": "ffn.down",
    "output.LayerNorm": "ffn.norm",
}
_GLOBAL_NAMES = {
    "embeddings.word_embeddings": "embed_tokens.word",
    "embeddings.position_embeddings": "embed_tokens.position",
    "embeddings.token_type_embeddings": "embed_tokens.token_type",
    "embeddings.LayerNorm": "embed_tokens.norm",
}


class ModelFilesError(ValueError):
    """A file of the model folder is missing, unreadable or describes something unsupported."""


@dataclass(frozen=True)
class SentenceConfig:
    """What sentence-transformers adds to the BERT: the token limit, pooling, normalisation.

    ``matryoshka_dims``: output widths the model was trained to be truncated to (read like
    vLLM does, from ``matryoshka_dimensions`` in config.json); empty for all-MiniLM-L6-v2.
    """

    max_tokens: int
    dimensions: int
    normalize: bool
    matryoshka_dims: tuple[int, ...] = ()


def read_bert_config(folder: Path) -> BertConfig:
    """``config.json`` -> ``BertConfig``; refuses what this encoder does not implement."""
    raw = _read_json(folder, "config.json")
    model_type = raw.get("model_type", "bert")
    if model_type != "bert" or raw.get("position_embedding_type", "absolute") != "absolute":
        raise ModelFilesError(
            f"config.json: only BERT with absolute positions is supported, got model_type "
            f"{model_type!r}, position_embedding_type {raw.get('position_embedding_type')!r}"
        )
    act = raw.get("hidden_act", "gelu")
    if act not in _GELU:
        raise ModelFilesError(f"config.json: hidden_act {act!r} is not supported")
    try:
        cfg = BertConfig(
            vocab_size=int(raw["vocab_size"]),
            dim=int(raw["hidden_size"]),
            n_layers=int(raw["num_hidden_layers"]),
            n_heads=int(raw["num_attention_heads"]),
            ffn_dim=int(raw["intermediate_size"]),
            max_positions=int(raw["max_position_embeddings"]),
            type_vocab_size=int(raw.get("type_vocab_size", 2)),
            norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
            gelu="tanh" if _GELU[act] == "tanh" else "none",
            pad_token_id=int(raw.get("pad_token_id", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFilesError(f"config.json: missing or invalid field {exc}") from exc
    if cfg.dim % cfg.n_heads:
        raise ModelFilesError(f"config.json: hidden_size {cfg.dim} is not a multiple of heads")
    return cfg


def read_sentence_config(folder: Path, cfg: BertConfig) -> SentenceConfig:
    """sentence-transformers' files; a plain transformers folder gets mean pooling, normalised."""
    st = _read_json(folder, "sentence_bert_config.json", missing_ok=True)
    max_tokens = int(st.get("max_seq_length") or cfg.max_positions)
    if not 0 < max_tokens <= cfg.max_positions:
        raise ModelFilesError(
            f"sentence_bert_config.json: max_seq_length {max_tokens} is outside 1.."
            f"{cfg.max_positions} (the model's positions)"
        )
    pooling = _read_json(folder, "1_Pooling/config.json", missing_ok=True)
    modes = sorted(k.removeprefix("pooling_mode_") for k, on in pooling.items() if on is True)
    if pooling and modes != ["mean_tokens"]:
        raise ModelFilesError(f"1_Pooling/config.json: only mean pooling is supported, got {modes}")
    modules = _read_json(folder, "modules.json", missing_ok=True, want=list)
    types = {m.get("type", "") for m in modules if isinstance(m, dict)}
    normalize = not modules or "sentence_transformers.models.Normalize" in types
    dims = _read_json(folder, "config.json").get("matryoshka_dimensions") or ()
    return SentenceConfig(max_tokens, cfg.dim, normalize, tuple(sorted(int(d) for d in dims)))


def bert_state_dict(cfg: BertConfig, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename transformers' tensors to ``SentenceBert``'s parameters, fusing q/k/v."""
    tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
    sd: dict[str, Tensor] = {}
    for theirs, ours in _GLOBAL_NAMES.items():
        for part in ("weight", "bias"):
            if f"{theirs}.{part}" in tensors:
                sd[f"{ours}.{part}"] = tensors[f"{theirs}.{part}"]
    for i in range(cfg.n_layers):
        fused: dict[str, list[Tensor]] = {}
        for theirs, ours in _LAYER_NAMES.items():
            for part in ("weight", "bias"):
                t = tensors.get(f"encoder.layer.{i}.{theirs}.{part}")
                if t is not None:
                    fused.setdefault(f"layers.{i}.{ours}.{part}", []).append(t)
        for name, parts in fused.items():
            if ".wqkv." not in name or len(parts) == 3:  # q, k and v, or missing
                sd[name] = parts[0] if len(parts) == 1 else torch.cat(parts)
    return sd


def load_sentence_bert(
    folder: Path, device: torch.device, dtype: torch.dtype, *, prepack: bool = True
) -> tuple[SentenceBert, SentenceConfig]:
    """Build the encoder from ``folder`` on ``device`` in ``dtype``, in eval mode.

    ``prepack``: on CPU, hand the linear layers to oneDNN in its blocked layout
    (``models.prepack``); ignored where that is not possible (CUDA, float16).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = read_bert_config(folder)
    sentence = read_sentence_config(folder, cfg)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelFilesError(f"{weights.name} is missing from the model folder")
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFilesError(f"{weights.name} cannot be read: {exc}") from exc
    with torch.device("meta"):
        model = SentenceBert(cfg, normalize=sentence.normalize)
    sd = bert_state_dict(cfg, tensors)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise ModelFilesError(f"{weights.name} lacks weights for: {', '.join(missing[:5])}")
    for name, param in expected.items():
        if sd[name].shape != param.shape:
            raise ModelFilesError(
                f"{weights.name}: {name} has shape {tuple(sd[name].shape)}, config.json "
                f"implies {tuple(param.shape)}"
            )
    model.load_state_dict({k: sd[k] for k in expected}, assign=True, strict=True)
    model.to(device=device, dtype=dtype)
    model.eval().requires_grad_(False)
    if prepack:
        prepack_linears(model)
    return model, sentence


def _read_json(folder: Path, name: str, *, missing_ok: bool = False, want: type = dict) -> Any:
    """The JSON document ``folder/name`` (a ``want``; empty when missing and ``missing_ok``)."""
    path = folder / name
    if missing_ok and not path.exists():
        return want()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFilesError(f"{name} is missing from the model folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFilesError(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(data, want):
        raise ModelFilesError(f"{name} should hold a JSON {want.__name__}, not {data!r:.40}")
    return data
