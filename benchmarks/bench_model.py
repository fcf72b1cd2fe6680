"""Decode throughput of the reference model, next to the memory-bandwidth bound.

Prints single-stream decode tokens/s and batched decode tokens/s (batch 8 and 32 by default)
for each way the runner can execute (plain eager; CPU: oneDNN-prepacked weights, in the
model's dtype, with bf16 matmuls and on the file's 4-bit weights; CUDA: CUDA graphs), each
next to its bound at batch 1:
(measured read bandwidth) / (bytes of weights one decode step reads). Decode of a small model
at batch 1 is bandwidth-bound, so the bound says how close the runner gets.

    python benchmarks/bench_model.py [--model NAME|PATH] [--device auto|cpu|cuda]
        [--dtype auto|float32|bfloat16|mixed] [--batches 1,8,32] [--steps 32]
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass

import torch

from server_ref.engine.device import INT4_AUTO_MAX_ROWS, pick_device
from server_ref.engine.kv_cache import BlockManager
from server_ref.engine.runner import ModelRunner
from server_ref.engine.scheduler import Scheduler
from server_ref.engine.sequence import Sequence
from server_ref.engine.types import DTYPE_CHOICES, SamplingParams
from server_ref.loading.gguf import load_int4_weights, load_tensors, open_gguf, read_config
from server_ref.loading.llama_weights import build_model
from server_ref.loading.registry import resolve_model
from server_ref.models.int4 import Int4Linear
from server_ref.models.llama import Llama
from server_ref.models.output_head import RescoredHead
from server_ref.models.prepack import PackedLinear


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def read_bandwidth(device: torch.device, dtype: torch.dtype, mib: int = 1024) -> float:
    """Bytes/s of a streaming read (a sum over a buffer far larger than the caches)."""
    x = torch.ones(mib << 20 // dtype.itemsize, dtype=dtype, device=device)
    x.sum()
    sync(device)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        x.sum()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return x.numel() * dtype.itemsize / best


def weight_bytes_per_token(model: Llama) -> int:
    """Bytes of weights a batch-1 decode step reads: every weight once, except the embedding
    (one row); a tied embedding is read whole as the output head unless the head has its own
    packed copy. A 4-bit layer reads its 4-bit weights (half a byte each) and a bf16 scale and
    zero per 32, not its dense fallback; the rescored head its bf16 copy (plus a few rows)."""
    total = 0
    dense_fallbacks = {id(m.dense) for m in model.modules() if isinstance(m, Int4Linear)}
    for m in model.modules():
        if isinstance(m, Int4Linear):
            total += m.in_features * m.out_features // 2 + m.scale_zero.numel() * 2
        elif isinstance(m, PackedLinear) and id(m) not in dense_fallbacks:
            total += m.in_features * m.out_features * m.matmul_dtype.itemsize
    packed_head = isinstance(model.lm_head, PackedLinear | RescoredHead)
    head_is_embed = model.cfg.tie_embeddings and not packed_head
    for name, p in model.named_parameters():  # a tied weight is listed once
        if name != "embed.weight" or head_is_embed:
            total += p.numel() * p.element_size()
    return total


def decode_tps(
    model: Llama, batch: int, prompt_len: int, steps: int, graphs: bool = False
) -> float:
    blocks = BlockManager(num_blocks=batch * ((prompt_len + steps) // 16 + 2), block_size=16)
    sched = Scheduler(
        blocks, max_num_seqs=batch, max_queue=batch, max_batched_tokens=batch * prompt_len
    )
    runner = ModelRunner(model, blocks.num_blocks, blocks.block_size, decode_graphs=graphs)
    g = torch.Generator().manual_seed(0)
    seqs = []
    for i in range(batch):
        ids = torch.randint(0, model.cfg.vocab_size, (prompt_len,), generator=g).tolist()
        seqs.append(Sequence(f"b{i}", ids, SamplingParams(max_tokens=steps), frozenset()))
        sched.add(seqs[-1])

    def step() -> None:
        b = sched.schedule()
        logits = runner.execute(b, [blocks.table(x.seq.request_id) for x in b])
        sampled = [x.seq for x in b if x.samples]
        for x in b:
            x.seq.num_computed += x.num_new
        for seq, tok in zip(sampled, logits.argmax(-1).tolist(), strict=True):
            seq.output_ids.append(tok)

    step()  # prefill (and warm-up)
    for _ in range(3):  # decode warm-up (captures the graph buckets it needs)
        step()
    sync(runner.device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(runner.device)
    return batch * steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--batches", default="1,8,32")
    args = ap.parse_args()
    device, dtype, matmul_dtype = pick_device(args.device, args.dtype)
    reader = open_gguf(resolve_model(args.model))
    cfg = read_config(reader)
    tensors = load_tensors(reader)
    name = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    print(
        f"model {cfg.name}  device {device} ({name}, "
        f"{torch.get_num_threads()} threads)  dtype {dtype}"
    )
    # each mode next to the plain eager one: on CUDA decode steps replayed as CUDA graphs (what
    # the server can do); on CPU linear layers on oneDNN-prepacked weights, in the model's dtype
    # and, for --dtype auto/mixed, with bf16 matmuls, and with the file's 4-bit weights in
    # steps of up to INT4_AUTO_MAX_ROWS rows, bf16 above (what the server does: --int4 auto)
    modes: list[Mode] = [Mode("eager")]
    if device.type == "cuda":
        modes.append(Mode("cuda-graphs", graphs=True))
    else:
        modes.append(Mode("prepacked", pack=True))
        if matmul_dtype != dtype:
            label = f"prepacked, {_short(matmul_dtype)} matmuls"
            modes.append(Mode(label, pack=True, matmul_dtype=matmul_dtype))
            label = f"int4 <= {INT4_AUTO_MAX_ROWS} rows (--int4 auto)"
            modes.append(Mode(label, True, matmul_dtype, int4=True))
    batches = [int(x) for x in args.batches.split(",")]
    results = []
    int4 = load_int4_weights(reader)
    for mode in modes:
        model = build_model(
            cfg,
            tensors,
            device,
            dtype,
            max_positions=4096,
            prepack=mode.pack,
            matmul_dtype=mode.matmul_dtype,
            int4=int4 if mode.int4 else None,
            int4_max_rows=INT4_AUTO_MAX_ROWS,
        )
        label, graphs = mode.label, mode.graphs
        wb = weight_bytes_per_token(model)
        for b in batches:
            results.append(
                (label, b, wb, decode_tps(model, b, args.prompt_len, args.steps, graphs))
            )
        del model
    bw = read_bandwidth(device, dtype)  # after decoding: its 1 GiB buffer must not disturb it
    print(f"measured read bandwidth {bw / 1e9:.1f} GB/s")
    for label, b, wb, tps in results:
        print(
            f"{label:31s} batch {b:3d}: {tps:8.1f} tokens/s  ({tps / b:6.1f} per stream; "
            f"{wb / 1e6:5.0f} MB of weights a step, {tps * wb / bw:5.2f}x the batch-1 bound)"
        )


@dataclass
class Mode:
    label: str
    pack: bool = False
    matmul_dtype: torch.dtype | None = None
    int4: bool = False
    graphs: bool = False


def _short(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(dtype, str(dtype))


if __name__ == "__main__":
    main()
