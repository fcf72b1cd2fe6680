"""CPU weight prepacking: linear layers run by oneDNN on weights reordered once at load time.

``F.linear`` on CPU hands a row-major weight to the BLAS on every call, which re-blocks it for
its kernel each time; at the small batches of decoding (1-32 rows) that re-blocking costs as
much as the multiply. oneDNN can keep the weight in its own blocked layout instead, which is
what ``torch.compile`` does for CPU linears when it freezes weights. Measured on a 2-core
AVX-512 VM, fp32, the default model's 30 layers of linears (benchmarks/bench_model.py has the
end-to-end numbers): 36.7 -> 24.8 ms at 1 row, 48.5 -> 28.2 ms at 16 rows, and the tied
49152-row output head 17.6 -> 5.7 ms at 16 rows.

By default the arithmetic stays in the model's dtype (fp32 stays fp32; only the summation
order differs, within 1e-6 relative). With ``matmul_dtype=torch.bfloat16`` an fp32 model keeps
its weights in bf16 and rounds each matmul's input to bf16; oneDNN accumulates in fp32 and the
result goes back to fp32, so the residual stream, norms, attention and KV cache stay fp32. This
is the shape of llama.cpp's CPU path (quantized weights, 8-bit activations in the dot products,
fp32 elsewhere) and halves the bytes a decode step streams.

A packed weight is an opaque oneDNN tensor: it is not a parameter, has no storage and cannot
be moved, so packing is the last step of building a model on its device.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# rows per matmul that oneDNN picks its blocking for; any row count works with the result
_BATCH_HINT = 16
# above this many rows a matmul runs on a multiple of it (see ``padded_rows``)
ROW_BUCKET = 32


def padded_rows(rows: int) -> int:
    """How many rows a ``PackedLinear`` multiplies to give ``rows`` rows of output.

    oneDNN builds and caches a kernel per matmul shape, and a serving engine's steps come in
    every row count up to their token budget (512 by default), so left alone a server keeps
    meeting new shapes for hours, each a kernel of about 0.3 MiB in two caches
    (``server_ref.engine.memory``). Decoding batches (up to ``ROW_BUCKET`` rows) keep their
    exact count; larger steps, prefill chunks, run on the next multiple of ``ROW_BUCKET``,
    at most ``ROW_BUCKET - 1`` zero rows more, so 512 rows make at most 47 shapes per layer
    kind. A lone row runs as two (see ``PackedLinear``).

    >>> [padded_rows(n) for n in (1, 2, 32, 33, 500)]
    [2, 2, 32, 64, 512]
    """
    if rows <= ROW_BUCKET:
        return max(rows, 2)
    return -(-rows // ROW_BUCKET) * ROW_BUCKET


class PackedLinear(nn.Module):
    """An ``nn.Linear`` whose weight lives in oneDNN's blocked layout.

    ``matmul_dtype``: the dtype the weight (and bias, added in the same oneDNN call) is kept
    and multiplied in (default: the weight's own); inputs are rounded to it and results come
    back in the input's dtype.

    A lone row is multiplied as two (with a zero row): oneDNN sums a single row in another
    order than the rows of a batch (measured on the default model's 1536-wide down
    projection), and from two rows on every row's result is the same whatever the row count.
    So a sequence decoded alone gets exactly the numbers it gets in a batch (see
    ``Attention.attend`` for the rest of that property), and padding a large step with zero
    rows (``padded_rows``) changes none of its real rows.
    """

    def __init__(
        self, weight: Tensor, matmul_dtype: torch.dtype | None = None, bias: Tensor | None = None
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.matmul_dtype = matmul_dtype or weight.dtype
        w = weight.detach().to(self.matmul_dtype)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(w, _BATCH_HINT)
        self.bias = None if bias is None else bias.detach().to(self.matmul_dtype)

    def forward(self, x: Tensor) -> Tensor:
        xm = x.to(self.matmul_dtype).reshape(-1, self.in_features)
        rows = xm.shape[0]
        extra = padded_rows(rows) - rows
        if extra:  # zero rows: see the class docstring and padded_rows
            xm = F.pad(xm, (0, 0, 0, extra))
        y: Tensor = torch.ops.mkldnn._linear_pointwise(xm, self.packed, self.bias, "none", [], "")
        if extra:
            y = y[:rows]
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"oneDNN {str(self.matmul_dtype).removeprefix('torch.')}"
        )


def packs_correctly(linear: nn.Linear, matmul_dtype: torch.dtype) -> bool:
    """Pack a probe of this layer's shape; True when oneDNN gives F.linear's result.

    Guards CPUs and builds where oneDNN lacks a kernel for the dtype (it raises) or where a
    fallback would compute in lower precision (the results differ).
    """
    w = linear.weight.to(matmul_dtype)
    probe = torch.randn(3, w.shape[1], generator=torch.Generator().manual_seed(0)).to(w.dtype)
    try:
        got = PackedLinear(w)(probe)
    except RuntimeError:
        return False
    want = F.linear(probe, w)
    tol = 1e-4 if w.dtype == torch.float32 else 2e-2
    return bool(torch.allclose(got.float(), want.float(), rtol=tol, atol=tol))


def can_prepack(device: torch.device, dtype: torch.dtype) -> bool:
    return (
        device.type == "cpu"
        and dtype in (torch.float32, torch.bfloat16)
        and bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]
    )


def has_native_bf16() -> bool:
    """True when oneDNN runs bf16 matmuls natively here (AVX512-BF16 or AMX), not emulated."""
    return bool(
        torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def prepack_linears(
    model: nn.Module,
    matmul_dtype: torch.dtype | None = None,
    keep_dtype: Collection[nn.Module] = (),
    exclude: Collection[nn.Module] = (),
) -> int:
    """Swap every ``nn.Linear`` of a CPU model for a ``PackedLinear`` (biases included).

    ``matmul_dtype``: multiply in this dtype (default: the model's own); layers in
    ``keep_dtype`` are packed in their own dtype regardless, those in ``exclude`` not at all.
    Returns how many were swapped:
    0 when the device, dtype or this torch build does not support it, in which case the model
    is left as it was.
    """
    excluded = {id(m) for m in exclude}
    linears = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.Linear) and id(child) not in excluded
    ]
    if not linears:
        return 0
    probe = linears[0][2]
    assert isinstance(probe, nn.Linear)
    dtypes = {matmul_dtype or probe.weight.dtype, probe.weight.dtype}
    if not all(can_prepack(probe.weight.device, d) and packs_correctly(probe, d) for d in dtypes):
        return 0
    kept = {id(m) for m in keep_dtype}
    for parent, name, child in linears:
        assert isinstance(child.weight, Tensor)
        dtype = None if id(child) in kept else matmul_dtype
        setattr(parent, name, PackedLinear(child.weight, dtype, child.bias))
    return len(linears)
