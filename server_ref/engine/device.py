"""Device and precision policy: ``--device`` and ``--dtype`` -> torch device and dtypes."""

from __future__ import annotations

import torch

from server_ref.engine.types import DTYPE_CHOICES, INT4_CHOICES
from server_ref.models.prepack import has_native_bf16

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Steps of at most this many tokens run the file's 4-bit weights under ``--int4 auto``; the
# int4 kernel's cost grows with every 4 rows, bf16 matmuls' hardly below 16: measured, they
# cross between 4 and 8 rows (models.int4)
INT4_AUTO_MAX_ROWS = 4


def pick_device(
    name: str = "auto", dtype: str = "auto"
) -> tuple[torch.device, torch.dtype, torch.dtype]:
    """``(device, model dtype, matmul dtype)`` for a ``--device`` and a ``--dtype``.

    Device ``auto``: CUDA when present, else CPU. Dtype ``auto``: bf16 on CUDA; on CPU
    ``mixed`` where the CPU has native bf16 matmuls (AVX512-BF16, AMX), else fp32 (emulated
    bf16 would be slower than fp32).
    ``mixed`` (CPU only) is an fp32 model whose block matmuls take bf16 weights and inputs
    (``models.prepack``): on the default model it keeps llama.cpp's top-1 agreement (97.2%
    against 96.9% for fp32) and answers "Paris", where full bf16 flips that near-tie (a
    0.35-logit margin) because its residual stream, attention and KV cache are bf16 too. It
    streams 326 MB of weights a decode step instead of 538. Rounding matmul inputs to bf16
    would turn any last-bit difference between a batched and a solo step into a 0.4% one;
    the runner and model are batch-invariant to the bit (``Attention.attend``,
    ``PackedLinear``), so greedy streams are the same batched as alone.

    >>> pick_device("cpu", "mixed")
    (device(type='cpu'), torch.float32, torch.bfloat16)
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but no CUDA device is available")
        device = torch.device("cuda")
    elif name == "cpu":
        device = torch.device("cpu")
    else:
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" else "mixed" if has_native_bf16() else "float32"
    if dtype == "mixed":
        if device.type != "cpu":
            raise ValueError("--dtype mixed is a CPU mode; on CUDA use bfloat16")
        return device, torch.float32, torch.bfloat16
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use {', '.join(DTYPE_CHOICES)}")
    return device, _DTYPES[dtype], _DTYPES[dtype]


def int4_max_rows(policy: str, dtype: torch.dtype, matmul_dtype: torch.dtype) -> int | None:
    """What ``--int4`` asks of ``build_model`` for a resolved precision: 0 (no 4-bit layers),
    a row limit (4-bit weights for steps of at most that many tokens) or None (every step).

    ``auto`` uses them for small steps (a single stream, small batches), where the int4 kernel
    reads a quarter of the bytes, and bf16 copies for prefill and big batches, where bf16
    matmuls are faster; a sequence's numbers then depend on the size of the steps it shares.
    ``always`` and ``never`` keep one kernel for every step, so greedy streams are the same
    batched as alone. 4-bit layers need ``mixed`` precision (the kernel takes bf16 inputs).

    >>> int4_max_rows("auto", torch.float32, torch.bfloat16)
    4
    """
    if policy not in INT4_CHOICES:
        raise ValueError(f"unknown --int4 {policy!r}; use {', '.join(INT4_CHOICES)}")
    mixed = dtype == torch.float32 and matmul_dtype == torch.bfloat16
    if policy == "always" and not mixed:
        raise ValueError("--int4 always needs --dtype mixed (a CPU mode)")
    if policy == "never" or not mixed:
        return 0
    return INT4_AUTO_MAX_ROWS if policy == "auto" else None
