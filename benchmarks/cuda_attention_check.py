"""Do the SDPA backends compute masked, grouped-query attention correctly on this GPU?

Compares ``scaled_dot_product_attention`` under each backend, with and without
``enable_gqa``, against an fp32 reference, on the shapes the runner uses (a causal prefill
chunk and a padded decode batch). Prints the max abs error per case; "error" when a backend
refuses the inputs.

    python benchmarks/cuda_attention_check.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    rep = q.shape[1] // k.shape[1]
    k, v = k.float().repeat_interleave(rep, 1), v.float().repeat_interleave(rep, 1)
    scores = q.float() @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    return (scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v).to(q.dtype)


def cases(dev: torch.device, dtype: torch.dtype) -> dict[str, tuple[torch.Tensor, ...]]:
    g = torch.Generator(device=dev).manual_seed(0)
    h, kv, d = 9, 3, 64

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device=dev).to(dtype)

    q_len, ctx = 37, 53  # a prefill chunk after 16 cached tokens
    qpos = torch.arange(ctx - q_len, ctx, device=dev)[:, None]
    causal = (torch.arange(ctx, device=dev)[None, :] <= qpos)[None, None]
    lens = torch.tensor([5, 40, 17, 64], device=dev)
    padded = (torch.arange(64, device=dev)[None, :] < lens[:, None])[:, None, None, :]
    return {
        "prefill": (rnd(1, h, q_len, d), rnd(1, kv, ctx, d), rnd(1, kv, ctx, d), causal),
        "decode": (rnd(4, h, 1, d), rnd(4, kv, 64, d), rnd(4, kv, 64, d), padded),
    }


def main() -> None:
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backends = {
        "default": None,
        "cudnn": [SDPBackend.CUDNN_ATTENTION],
        "efficient": [SDPBackend.EFFICIENT_ATTENTION],
        "math": [SDPBackend.MATH],
    }
    for dtype in (torch.bfloat16, torch.float32):
        for name, (q, k, v, mask) in cases(dev, dtype).items():
            ref = reference(q, k, v, mask)
            rep = q.shape[1] // k.shape[1]
            for bname, chosen in backends.items():
                for gqa in (True, False):
                    kk = k if gqa else k.repeat_interleave(rep, 1)
                    vv = v if gqa else v.repeat_interleave(rep, 1)
                    try:
                        if chosen is None:
                            out = F.scaled_dot_product_attention(
                                q, kk, vv, attn_mask=mask, enable_gqa=gqa
                            )
                        else:
                            with sdpa_kernel(chosen):
                                out = F.scaled_dot_product_attention(
                                    q, kk, vv, attn_mask=mask, enable_gqa=gqa
                                )
                        err = f"{(out.float() - ref.float()).abs().max().item():.4f}"
                    except RuntimeError as e:
                        err = "error: " + str(e).splitlines()[0][:60]
                    print(f"{dtype!s:15s} {name:8s} {bname:10s} gqa={gqa!s:5s} max|err| {err}")


if __name__ == "__main__":
    main()
