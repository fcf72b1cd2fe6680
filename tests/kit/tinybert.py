"""Write a tiny random-weight sentence-transformers BERT folder for tests (a few hundred KB).

The folder has what ``registry.pull`` extracts for all-MiniLM-L6-v2: ``config.json``,
``model.safetensors`` (transformers' ``BertModel`` names, with a ``pooler`` the loader must
ignore), a WordPiece ``tokenizer.json`` built with the ``tokenizers`` library (BERT's
normaliser, pre-tokeniser and ``[CLS] ... [SEP]`` template), ``sentence_bert_config.json``,
``1_Pooling/config.json`` and ``modules.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

NAME = "tiny-bert"  # the folder the fixture writes; a server names the model after it
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "is",
    "in",
    "it",
    "that",
    "hello",
    "world",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "cat",
    "sat",
    "on",
    "mat",
    "text",
    "embedding",
    "model",
    "token",
    "search",
    "query",
    "answer",
    "code",
    "def",
    "return",
]
PIECES = ["##s", "##ing", "##ed", "##er", "##ly"] + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?()=:+-*/'\"")
VOCAB = SPECIALS + WORDS + PIECES + CHARS + ["日", "本", "語"]

DIM, HEADS, LAYERS, FFN, POSITIONS = 32, 4, 2, 64, 64


def config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_act": "gelu",
        "hidden_size": DIM,
        "intermediate_size": FFN,
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "max_position_embeddings": POSITIONS,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "vocab_size": len(VOCAB),
    }
    cfg.update(overrides)
    return cfg


def random_weights(seed: int = 0, prefix: str = "") -> dict[str, torch.Tensor]:
    """transformers' BertModel state dict with random values (LayerNorms near identity)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    def norm(name: str) -> dict[str, torch.Tensor]:
        return {f"{name}.weight": 1 + rand(DIM, scale=0.05), f"{name}.bias": rand(DIM, scale=0.05)}

    def dense(name: str, n_out: int, n_in: int) -> dict[str, torch.Tensor]:
        return {f"{name}.weight": rand(n_out, n_in), f"{name}.bias": rand(n_out, scale=0.05)}

    sd = {
        "embeddings.word_embeddings.weight": rand(len(VOCAB), DIM, scale=1.0),
        "embeddings.position_embeddings.weight": rand(POSITIONS, DIM, scale=0.5),
        "embeddings.token_type_embeddings.weight": rand(2, DIM, scale=0.5),
        "embeddings.position_ids": torch.arange(POSITIONS)[None],
        **norm("embeddings.LayerNorm"),
        **dense("pooler.dense", DIM, DIM),
    }
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for proj in ("query", "key", "value"):
            sd.update(dense(f"{p}attention.self.{proj}", DIM, DIM))
        sd.update(dense(f"{p}attention.output.dense", DIM, DIM))
        sd.update(norm(f"{p}attention.output.LayerNorm"))
        sd.update(dense(f"{p}intermediate.dense", FFN, DIM))
        sd.update(dense(f"{p}output.dense", DIM, FFN))
        sd.update(norm(f"{p}output.LayerNorm"))
    return {prefix + k: v.contiguous() for k, v in sd.items()}


def wordpiece_tokenizer() -> Tokenizer:
    vocab = {token: i for i, token in enumerate(VOCAB)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(SPECIALS)
    # what all-MiniLM-L6-v2's file has too: padding and truncation the loader must switch off
    tok.enable_padding(length=24, pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=24)
    return tok


def write_tiny_bert(
    folder: Path,
    *,
    max_seq_length: int = 16,
    normalize: bool = True,
    seed: int = 0,
    config_overrides: dict[str, Any] | None = None,
) -> Path:
    """Write the folder; return it. ``max_seq_length`` is the sentence-transformers limit."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config(**(config_overrides or {}))))
    save_file(random_weights(seed), str(folder / "model.safetensors"), metadata={"format": "pt"})
    wordpiece_tokenizer().save(str(folder / "tokenizer.json"))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": DIM, "pooling_mode_mean_tokens": True})
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder
