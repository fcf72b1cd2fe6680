"""Read a GGUF file: metadata -> model config, tensors -> dequantized torch tensors.

GGUF stores shapes fastest-dimension first (ggml's ``ne`` order); numpy/torch want the
reverse. ``gguf.GGUFReader`` already hands us numpy arrays in numpy order (for quantized
types: rows of raw block bytes), and ``gguf.quants.dequantize`` expands the blocks, so a
tensor listed as ``[576, 1536]`` in the file arrives here as a ``(1536, 576)`` float array,
i.e. ``(out_features, in_features)`` as ``torch.nn.functional.linear`` expects.

Every way a file can be wrong is reported as a ``GGUFError`` subclass whose message names the
file and the problem: not a GGUF file, truncated, an architecture or tensor type we cannot run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as QType

from server_ref.models.int4 import GROUP, Int4Weight
from server_ref.models.llama import ModelConfig

SUPPORTED_ARCHITECTURES = ("llama",)


class GGUFError(ValueError):
    """A GGUF file that cannot be loaded; the message says which file and why."""


class NotGGUFError(GGUFError):
    pass


class TruncatedGGUFError(GGUFError):
    pass


class UnsupportedArchitectureError(GGUFError):
    pass


class UnsupportedTensorTypeError(GGUFError):
    pass


class MissingMetadataError(GGUFError):
    pass


def _dequantizable() -> frozenset[QType]:
    """Tensor types ``gguf.quants`` can turn into floats (plus the plain float types)."""
    traits = getattr(gguf.quants, "_type_traits", {})
    return frozenset({QType.F32, QType.F16, *traits})


SUPPORTED_TENSOR_TYPES = _dequantizable()


def open_gguf(path: str | os.PathLike[str]) -> gguf.GGUFReader:
    """Open ``path`` with gguf's reader, turning its assorted failures into clear errors.

    >>> reader = open_gguf("model.gguf")  # doctest: +SKIP
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model file not found: {p}")
    with p.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise NotGGUFError(f"{p.name} is not a GGUF file (magic bytes {magic!r}, expected b'GGUF')")
    try:
        reader = gguf.GGUFReader(p)
    except (ValueError, IndexError, OverflowError, TypeError) as e:
        # gguf's parser reads past the end of a cut file with numpy errors of several kinds
        raise TruncatedGGUFError(f"{p.name} is truncated or corrupt: {e}") from e
    size = p.stat().st_size
    for t in reader.tensors:
        end = int(t.data_offset) + int(t.n_bytes)
        if end > size:
            raise TruncatedGGUFError(
                f"{p.name} is truncated: tensor {t.name!r} needs bytes up to {end}, "
                f"the file has {size}"
            )
    return reader


def field_value(reader: gguf.GGUFReader, key: str, default: Any = None) -> Any:
    """One metadata value as a Python object (str, int, float, bool or list)."""
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def architecture(reader: gguf.GGUFReader) -> str:
    arch = field_value(reader, "general.architecture")
    if arch is None:
        raise MissingMetadataError("GGUF file has no general.architecture")
    return str(arch)


def read_config(reader: gguf.GGUFReader) -> ModelConfig:
    """Map GGUF metadata (``<arch>.*`` keys) to a ``ModelConfig``."""
    arch = architecture(reader)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"unsupported model architecture {arch!r}; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )

    def need(key: str) -> Any:
        v = field_value(reader, f"{arch}.{key}")
        if v is None:
            raise MissingMetadataError(f"GGUF metadata is missing {arch}.{key}")
        return v

    n_heads = int(need("attention.head_count"))
    names = {t.name for t in reader.tensors}
    tokens = field_value(reader, "tokenizer.ggml.tokens")
    vocab = field_value(reader, f"{arch}.vocab_size") or (len(tokens) if tokens else None)
    if vocab is None:
        raise MissingMetadataError(f"GGUF metadata has neither {arch}.vocab_size nor a token list")
    return ModelConfig(
        arch=arch,
        name=str(field_value(reader, "general.name", "model")),
        vocab_size=int(vocab),
        dim=int(need("embedding_length")),
        n_layers=int(need("block_count")),
        n_heads=n_heads,
        n_kv_heads=int(field_value(reader, f"{arch}.attention.head_count_kv", n_heads)),
        ffn_dim=int(need("feed_forward_length")),
        norm_eps=float(need("attention.layer_norm_rms_epsilon")),
        rope_base=float(field_value(reader, f"{arch}.rope.freq_base", 10000.0)),
        context_length=int(need("context_length")),
        tie_embeddings="output.weight" not in names,
    )


def dequantize(tensor: Any, *, file_name: str = "") -> np.ndarray[Any, Any]:
    """One ``ReaderTensor`` -> float32 numpy array in numpy (row-major) shape."""
    qtype = QType(tensor.tensor_type)
    if qtype not in SUPPORTED_TENSOR_TYPES:
        raise UnsupportedTensorTypeError(
            f"{file_name or 'GGUF'}: tensor {tensor.name!r} has type {qtype.name}, "
            "which this loader cannot dequantize"
        )
    try:
        out = gguf.quants.dequantize(tensor.data, qtype)
    except NotImplementedError as e:
        raise UnsupportedTensorTypeError(
            f"{file_name or 'GGUF'}: tensor {tensor.name!r} of type {qtype.name}: {e}"
        ) from e
    shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
    # copy: plain F32 tensors arrive as read-only views of the memory-mapped file
    return np.array(out, dtype=np.float32, copy=True).reshape(shape)


def load_tensors(
    reader: gguf.GGUFReader, names: Iterable[str] | None = None
) -> dict[str, torch.Tensor]:
    """Dequantize tensors (all, or ``names``) into float32 CPU torch tensors."""
    wanted = None if names is None else set(names)
    file_name = Path(str(reader.data.filename)).name if hasattr(reader.data, "filename") else ""
    out: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        if wanted is None or t.name in wanted:
            out[t.name] = torch.from_numpy(dequantize(t, file_name=file_name))
    if wanted is not None and (missing := wanted - out.keys()):
        raise MissingMetadataError(f"GGUF file lacks tensors: {', '.join(sorted(missing))}")
    return out


# 4-bit GGUF types whose blocks map onto ``models.int4`` as they are: bytes of a block before
# its 16 bytes of nibbles (fp16 d, and fp16 m for Q4_1)
_INT4_HEADERS = {QType.Q4_0: 2, QType.Q4_1: 4}


def load_int4_weights(reader: gguf.GGUFReader) -> dict[str, Int4Weight]:
    """The Q4_0 and Q4_1 tensors of a file as ``Int4Weight``: their 4-bit values and fp16
    scales as stored, nothing requantized (other tensors are left out).

    >>> weights = load_int4_weights(open_gguf("model.gguf"))  # doctest: +SKIP
    >>> weights["blk.0.ffn_up.weight"].q.shape  # doctest: +SKIP
    torch.Size([1536, 576])
    """
    out: dict[str, Int4Weight] = {}
    for t in reader.tensors:
        header = _INT4_HEADERS.get(QType(t.tensor_type))
        if header is None:
            continue
        rows = int(t.data.shape[0])
        blocks = np.asarray(t.data).reshape(rows, -1, header + GROUP // 2)  # [N, K / 32, bytes]
        d = blocks[..., :2].copy().view(np.float16)[..., 0].astype(np.float32)
        if header == 4:  # Q4_1: w = d * q + m
            m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        else:  # Q4_0: w = d * (q - 8)
            m = -8 * d
        nibbles = blocks[..., header:]  # byte j: weight j (low nibble), weight j + 16 (high)
        q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1).reshape(rows, -1)
        out[t.name] = Int4Weight(torch.from_numpy(q), torch.from_numpy(d), torch.from_numpy(m))
    return out
