"""4-bit weights kept as the GGUF file stores them, multiplied by PyTorch's int4 CPU kernel.

GGUF's Q4_0 and Q4_1 store each run of 32 weights of a row as 4-bit values ``q`` (0..15) and
two fp16 numbers: ``w = d * q + m`` (Q4_1; Q4_0 is ``d * (q - 8)``, i.e. ``m = -8d``).
``aten._weight_int4pack_mm_for_cpu`` (the kernel behind torchao's CPU int4 weight-only
layout) multiplies bf16 activations by weights ``(q - 8) * scale + zero`` with one bf16
``scale`` and ``zero`` per run of 32, accumulating in fp32. So ``scale = d`` and ``zero = m +
8d`` run the file's own 4-bit values with no requantization; only d and m + 8d are rounded
from fp16 to bf16. A decode step then streams 4.5 bits per weight instead of bf16's 16: at one
row the kernel takes about a quarter of the bf16 matmul's time on the default model.

The kernel sums every output row on its own, in the same order whatever the row count (rows
are blocked by four, each with its own accumulators; the reduction is never split), so a
sequence gets the same numbers alone as in a batch (tested). It dequantizes the weights again
for every block of four rows, though: measured on a 2-core AVX-512 machine, one thread, the
default model's 120 block layers take 9-11 ms at 1 row against 27-38 ms for oneDNN's
prepacked bf16 matmuls, 14-16 against 20-25 at 4 rows, about the same at 6 and 45 against 30
at 16 (``engine.device.INT4_AUTO_MAX_ROWS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

GROUP = 32  # weights per (scale, offset) pair in Q4_0 / Q4_1, and the kernel's group size


@dataclass
class Int4Weight:
    """A 4-bit weight matrix: ``w[n, k] = scale[n, k // 32] * q[n, k] + offset[n, k // 32]``.

    ``q``: uint8 [N, K], values 0..15; ``scale``, ``offset``: fp32 [N, K / 32], exactly the
    file's fp16 numbers (``loading.gguf.load_int4_weights`` reads them).
    """

    q: Tensor
    scale: Tensor
    offset: Tensor

    def dequantize(self) -> Tensor:
        """The fp32 weights, bit for bit what gguf's own dequantization gives.

        >>> q = torch.full((1, 32), 3, dtype=torch.uint8)
        >>> Int4Weight(q, torch.ones(1, 1), torch.zeros(1, 1)).dequantize()[0, :2].tolist()
        [3.0, 3.0]
        """
        n, k = self.q.shape
        q = self.q.view(n, k // GROUP, GROUP).float()
        return (self.scale[..., None] * q + self.offset[..., None]).view(n, k)

    @staticmethod
    def cat(parts: list[Int4Weight]) -> Int4Weight:
        """Stack weights along the output dimension (as fused projections do)."""
        return Int4Weight(
            torch.cat([p.q for p in parts]),
            torch.cat([p.scale for p in parts]),
            torch.cat([p.offset for p in parts]),
        )


def int4_supported(weight: Int4Weight) -> bool:
    """True when the int4 kernel can run this weight fast here: an x86 CPU with AVX2 or
    AVX-512 (elsewhere it falls back to scalar code, 25x slower than bf16 matmuls), shapes the
    kernel's blocking takes (output rows a multiple of 16, input a multiple of 32)."""
    n, k = weight.q.shape
    fast = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    return fast and n % 16 == 0 and k % GROUP == 0


class Int4Linear(nn.Module):
    """A bias-free linear layer on 4-bit weights (``aten._weight_int4pack_mm_for_cpu``).

    Inputs are rounded to bf16, results come back in the input's dtype (rounded to bf16 by
    the kernel, as bf16 matmuls' results are). ``dense``: a layer with the same weights in
    another format (a bf16 ``PackedLinear``), used instead for inputs of more than
    ``max_rows`` rows, where it is faster; a row's numbers then depend on how many rows share
    its step (the two formats round differently), which ``dense=None`` rules out.

    >>> q = torch.full((16, 32), 9, dtype=torch.uint8)
    >>> w = Int4Weight(q, torch.ones(16, 1), torch.zeros(16, 1))
    >>> Int4Linear(w)(torch.ones(1, 32))[0, 0].item()
    288.0
    """

    matmul_dtype = torch.bfloat16  # what the inputs are rounded to

    def __init__(
        self, weight: Int4Weight, dense: nn.Module | None = None, max_rows: int = 0
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.q.shape
        self.dense = dense
        self.max_rows = max_rows
        # the kernel's packed layout; innerKTiles only matters for the CUDA packing
        self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
            weight.q.to(torch.int32), 2
        )
        # (q - 8) * d + (m + 8d) == d * q + m; summed in float64, rounded once to bf16
        zero = weight.offset.double() + 8 * weight.scale.double()
        scale_zero = torch.stack([weight.scale.double(), zero], dim=-1)  # [N, K / 32, 2]
        self.scale_zero = scale_zero.transpose(0, 1).contiguous().to(torch.bfloat16)

    def forward(self, x: Tensor) -> Tensor:
        if self.dense is not None and x.numel() > self.max_rows * self.in_features:
            y: Tensor = self.dense(x)
            return y
        flat = x.dim() == 2  # the model's blocks: no reshapes (each a call, ~120 a step)
        rows = (x if flat else x.reshape(-1, self.in_features)).to(torch.bfloat16).contiguous()
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed, GROUP, self.scale_zero)
        return (y if flat else y.view(*x.shape[:-1], self.out_features)).to(x.dtype)

    def extra_repr(self) -> str:
        above = f", above {self.max_rows} rows:" if self.dense is not None else ""
        shape = f"in_features={self.in_features}, out_features={self.out_features}"
        return f"{shape}, int4 g{GROUP}{above}"
