"""GGUF reading: every quant type round-trips, and every kind of bad file gets a clear error."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from kit.tinymodel import QUANT_TYPES, write_tiny_gguf

from server_ref.loading.gguf import (
    SUPPORTED_TENSOR_TYPES,
    NotGGUFError,
    TruncatedGGUFError,
    UnsupportedArchitectureError,
    UnsupportedTensorTypeError,
    load_tensors,
    open_gguf,
    read_config,
)
from server_ref.loading.llama_weights import build_model

# types gguf can quantize, plus K/I-quants that gguf can only dequantize (written as raw blocks)
QUANTIZABLE = [Q.F32, Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.TQ1_0, Q.TQ2_0]
DEQUANT_ONLY = [Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_NL, Q.IQ4_XS]


def _write(path: Path, tensors: dict[str, tuple[np.ndarray, Q]], arch: str = "llama") -> Path:
    w = gguf.GGUFWriter(str(path), arch)
    for name, (data, qtype) in tensors.items():
        w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("qtype", QUANTIZABLE, ids=lambda q: q.name)
def test_quantized_tensor_round_trips(tmp_path: Path, qtype: Q) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 256)).astype(np.float32)
    raw = x if qtype == Q.F32 else gguf.quants.quantize(x, qtype)
    r = open_gguf(_write(tmp_path / "t.gguf", {"w": (raw, qtype)}))
    got = load_tensors(r)["w"]
    assert got.shape == (4, 256) and got.dtype == torch.float32
    expected = x if qtype == Q.F32 else gguf.quants.dequantize(raw, qtype)
    np.testing.assert_array_equal(got.numpy(), expected.reshape(4, 256))
    # and the quantization error is what the format allows (ternary types are coarse by design)
    tol = {Q.F32: 0, Q.F16: 1e-2, Q.BF16: 2e-2, Q.Q8_0: 0.05}.get(qtype, 0.5)
    if qtype not in (Q.TQ1_0, Q.TQ2_0):
        assert float((got - torch.from_numpy(x)).abs().max()) <= tol


@pytest.mark.parametrize("qtype", DEQUANT_ONLY, ids=lambda q: q.name)
def test_dequantize_only_types_load(tmp_path: Path, qtype: Q) -> None:
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = np.zeros((2, 256 // block * type_size), dtype=np.uint8)  # all-zero blocks
    r = open_gguf(_write(tmp_path / "t.gguf", {"w": (raw, qtype)}))
    got = load_tensors(r)["w"]
    assert got.shape == (2, 256)
    assert torch.isfinite(got).all()


def test_tiny_model_config(tiny_gguf: Path) -> None:
    cfg = read_config(open_gguf(tiny_gguf))
    assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size) == (
        256,
        2,
        4,
        2,
        264,
    )
    assert cfg.head_dim == 64 and not cfg.tie_embeddings
    assert {Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.F16, Q.BF16} <= set(QUANT_TYPES)


def test_not_a_gguf_file(tmp_path: Path) -> None:
    p = tmp_path / "model.gguf"
    p.write_bytes(b"<html>not a model</html>")
    with pytest.raises(NotGGUFError, match="not a GGUF file"):
        open_gguf(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        open_gguf(tmp_path / "nope.gguf")


@pytest.mark.parametrize("keep", [0.5, 0.999, 40 / 1_767_936])
def test_truncated_file(tiny_gguf: Path, tmp_path: Path, keep: float) -> None:
    data = tiny_gguf.read_bytes()
    p = tmp_path / "cut.gguf"
    p.write_bytes(data[: max(8, int(len(data) * keep))])
    with pytest.raises(TruncatedGGUFError, match="truncated"):
        open_gguf(p)


def test_unsupported_architecture(tmp_path: Path) -> None:
    p = write_tiny_gguf(tmp_path / "mamba.gguf", arch="mamba", n_layers=1)
    with pytest.raises(UnsupportedArchitectureError, match="'mamba'"):
        read_config(open_gguf(p))


def test_unsupported_tensor_type(tmp_path: Path) -> None:
    assert Q.I32 not in SUPPORTED_TENSOR_TYPES
    r = open_gguf(_write(tmp_path / "t.gguf", {"ints": (np.arange(32, dtype=np.int32), Q.I32)}))
    with pytest.raises(UnsupportedTensorTypeError, match="'ints' has type I32"):
        load_tensors(r)


@pytest.mark.parametrize(
    "dropped", ["blk.1.attn_k.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"]
)
def test_a_missing_weight_is_named_even_when_it_feeds_a_fused_projection(
    tiny_gguf: Path, dropped: str
) -> None:
    # q/k/v and gate/up are concatenated into one matrix each at load; a missing part must be
    # reported as missing, not as a shape mismatch deep inside load_state_dict
    r = open_gguf(tiny_gguf)
    tensors = load_tensors(r)
    del tensors[dropped]
    with pytest.raises(ValueError, match="lacks weights for: blocks"):
        build_model(read_config(r), tensors, torch.device("cpu"), torch.float32)
