"""The ``--int4`` value under which a server keeps "a greedy stream is the same batched as
alone" and still runs the 4-bit kernel where it can.

``--int4 auto`` (opt-in) runs the GGUF's 4-bit weights in small steps and bf16 copies in big
ones, so a stream's numbers depend on the steps it shares (``engine.device``); tests of batch
invariance that exercise the 4-bit kernel pin it for every step: ``always`` where the default
precision is mixed (the kernel takes bf16 inputs), else ``never``.
"""

from __future__ import annotations

import torch

from server_ref.engine.device import pick_device


def invariant_int4(device: str = "cpu") -> str:
    """``always`` or ``never``: one matmul kernel in every step at ``--dtype auto``."""
    _, dtype, matmul_dtype = pick_device(device, "auto")
    return "always" if (dtype, matmul_dtype) == (torch.float32, torch.bfloat16) else "never"
