"""CPU weight prepacking: linear layers run by oneDNN on weights reordered once at load time.

``F.linear`` on CPU hands a row-major weight to the BLAS on every call, which re-blocks it for
its kernel each time; at the small batches of decoding (1-32 rows) that re-blocking costs as
much as the multiply. oneDNN can keep the weight in its own blocked layout instead, which is
what ``torch.compile`` does for CPU linears when it freezes weights. Measured on a 2-core
AVX-512 VM, fp32, the default model's 30 layers of linears (benchmarks/bench_model.py has the
end-to-end numbers): 36.7 -> 24.8 ms at 1 row, 48.5 -> 28.2 ms at 16 rows, and the tied
49152-row output head 17.6 -> 5.7 ms at 16 rows.

The arithmetic stays in the model's dtype (fp32 stays fp32; only the summation order
differs, within 1e-6 relative). A packed weight is an opaque oneDNN tensor: it is not a
parameter, has no storage and cannot be moved, so packing is the last step of building a
model on its device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# rows per matmul that oneDNN picks its blocking for; any row count works with the result
_BATCH_HINT = 16


class PackedLinear(nn.Module):
    """A bias-free ``nn.Linear`` whose weight lives in oneDNN's blocked layout."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.dtype = weight.dtype
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), _BATCH_HINT)

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")
        return y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN"


def _packs_correctly(linear: nn.Linear) -> bool:
    """Pack a probe of this layer's shape and dtype; True when oneDNN gives F.linear's result.

    Guards CPUs and builds where oneDNN lacks a kernel for the dtype (it raises) or where a
    fallback would compute in lower precision (the results differ).
    """
    w = linear.weight
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


def prepack_linears(model: nn.Module) -> int:
    """Swap every bias-free ``nn.Linear`` of a CPU model for a ``PackedLinear``.

    Returns how many were swapped: 0 when the device, dtype or this torch build does not
    support it, in which case the model is left as it was.
    """
    linears = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.Linear) and child.bias is None
    ]
    if not linears:
        return 0
    probe = linears[0][2]
    assert isinstance(probe, nn.Linear)
    if not can_prepack(probe.weight.device, probe.weight.dtype) or not _packs_correctly(probe):
        return 0
    for parent, name, child in linears:
        assert isinstance(child.weight, Tensor)
        setattr(parent, name, PackedLinear(child.weight))
    return len(linears)
