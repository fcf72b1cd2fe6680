"""Building an ``Embedder`` from a model folder: device and dtype choice, loading, checks.

>>> from server_ref.loading.registry import pull
>>> folder = pull("all-minilm-l6-v2")  # doctest: +SKIP
>>> embedder = build_embedder(folder, model_id="all-minilm-l6-v2")  # doctest: +SKIP
>>> embedder.start()  # doctest: +SKIP
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from server_ref.engine.embedder import Embedder
from server_ref.engine.embedding_types import EmbedderLimits, EmbeddingModelInfo
from server_ref.loading.bert_weights import ModelFilesError, load_sentence_bert
from server_ref.loading.hf_tokenizer import HFTokenizer

__all__ = ["EMBEDDING_DTYPES", "build_embedder", "pick_embedding_device"]

EMBEDDING_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_embedding_device(
    device: str = "auto", dtype: str = "auto"
) -> tuple[torch.device, torch.dtype]:
    """``(device, dtype)`` for the embedding model.

    ``auto`` device: CUDA when present, else the CPU. ``auto`` dtype: float32 on the CPU (the
    model is small, and bf16 matmuls are emulated, so slower, on CPUs without AVX512-BF16/AMX);
    on CUDA float16, whose 10 mantissa bits (bfloat16 has 7) keep the embeddings closest to
    float32 while BERT's activations stay far inside its range. The fidelity of each dtype is
    measured by ``benchmarks/bench_embeddings.py --fidelity``.

    >>> pick_embedding_device("cpu")
    (device(type='cpu'), torch.float32)
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for, but no CUDA device is available")
    if dtype == "auto":
        dtype = "float16" if device == "cuda" else "float32"
    if dtype not in EMBEDDING_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, {', '.join(EMBEDDING_DTYPES)}")
    return torch.device(device), EMBEDDING_DTYPES[dtype]


def build_embedder(
    folder: Path,
    *,
    model_id: str,
    device: str = "auto",
    dtype: str = "auto",
    limits: EmbedderLimits | None = None,
) -> Embedder:
    """Load a sentence-transformers folder (what ``registry.pull`` returns for an embedding
    model) into an ``Embedder``, not started yet. ``ModelFilesError`` for bad files."""
    dev, dt = pick_embedding_device(device, dtype)
    model, sentence = load_sentence_bert(Path(folder), dev, dt)
    tokenizer = HFTokenizer.from_file(Path(folder) / "tokenizer.json", sentence.max_tokens)
    if tokenizer.vocab_size > model.cfg.vocab_size:
        raise ModelFilesError(
            f"tokenizer.json has {tokenizer.vocab_size} tokens, the model embeds only "
            f"{model.cfg.vocab_size}"
        )
    info = EmbeddingModelInfo(
        id=model_id,
        dimensions=sentence.dimensions,
        max_tokens=sentence.max_tokens,
        vocab_size=model.cfg.vocab_size,
        matryoshka_dims=sentence.matryoshka_dims,
        extra={"device": str(dev), "dtype": str(dt).removeprefix("torch.")},
        created=int(time.time()),
    )
    return Embedder(model, tokenizer, info, limits)
