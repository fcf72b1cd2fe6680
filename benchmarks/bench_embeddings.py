"""Embedding throughput of the reference server's embedder against sentence-transformers.

Both embed the same texts with the same model files (all-MiniLM-L6-v2 from the local model
cache, pulled on first use) on the same device: ours through the ``Embedder`` service
(tokenization, the worker thread, padding-aware batches; what the HTTP route will call),
theirs through ``SentenceTransformer.encode``. Batch 1 sends one text per call; batch 32
sends 32 texts per call (``encode(batch_size=32)``). Each round runs every case of both in
turn, alternating which goes first; the table shows medians over rounds and our rate / theirs,
by wall time and by this process's CPU time (steadier when the machine is shared).

    python benchmarks/bench_embeddings.py [--rounds 5] [--texts 256] [--device cpu|cuda]
        [--dtype float32|bfloat16|float16] [--fidelity]

``--fidelity`` also prints the cosine similarity of our embeddings to sentence-transformers'
float32 ones for each dtype on the device (the numbers behind the CUDA default dtype).
Needs ``sentence-transformers`` (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import time
from collections.abc import Callable

import torch

from server_ref.engine.build_embedder import EMBEDDING_DTYPES, build_embedder
from server_ref.engine.embedder import Embedder
from server_ref.loading.registry import DEFAULT_EMBEDDING_MODEL, pull

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "her",
    "an",
    "which",
    "are",
    "this",
    "be",
    "were",
    "model",
    "search",
    "query",
    "document",
    "embedding",
    "vector",
    "retrieval",
    "passage",
    "answer",
    "question",
    "server",
    "token",
    "batch",
    "latency",
    "throughput",
    "memory",
    "python",
    "function",
    "return",
    "class",
    "import",
    "data",
    "table",
    "weather",
    "river",
    "mountain",
    "city",
    "history",
    "music",
    "science",
    "language",
    "learning",
    "network",
    "energy",
    "café",
    "naïve",
    "東京",
    "数据",
    "모델",
    "🙂",
    "λ",
    "→",
    "x",
    "=",
    "f(y)",
    "+",
    "2",
    "#",
    "{}",
    "[]",
    "()",
    "<div>",
    "SELECT",
    "*",
    "FROM",
    "t;",
]


def corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` texts of 5..150 words (most under the 256-token limit, a few over it)."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(5, 150))) for _ in range(n)]


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def rate(embed: Callable[[list[str]], object], texts: list[str], batch: int) -> tuple[float, float]:
    """Texts per second of wall time and of this process's CPU time, embedding ``texts`` in
    calls of ``batch`` texts. CPU time counts every thread of the process (our worker, the
    intra-op pool) and is less disturbed than wall time when other work shares the cores."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), batch):
        embed(texts[i : i + batch])
    return len(texts) / (time.perf_counter() - wall), len(texts) / (time.process_time() - cpu)


def fidelity(folder: str, device: str, texts: list[str]) -> None:
    """Cosine of ours in each dtype to sentence-transformers in float32 on the CPU."""
    from sentence_transformers import SentenceTransformer

    ref = torch.tensor(SentenceTransformer(folder, device="cpu").encode(texts))
    for dtype in EMBEDDING_DTYPES:
        ours = build_embedder(folder, model_id="m", device=device, dtype=dtype)
        ours.start()
        got = torch.from_numpy(ours.submit(texts).result().vectors)
        ours.shutdown()
        cos = torch.nn.functional.cosine_similarity(got, ref)
        print(f"  {device} {dtype:9}: cosine to sentence-transformers fp32: min {cos.min():.6f}, "
              f"mean {cos.mean():.6f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--texts", type=int, default=256, help="texts per case and round")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=list(EMBEDDING_DTYPES))
    ap.add_argument("--fidelity", action="store_true", help="cosine to the reference per dtype")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never ask a hub
    from sentence_transformers import SentenceTransformer

    folder = str(pull(DEFAULT_EMBEDDING_MODEL))
    texts = corpus(args.texts)
    threads = torch.get_num_threads()
    print(f"{DEFAULT_EMBEDDING_MODEL} on {args.device} ({args.dtype}); {cpu_name()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} ({threads} threads)")  # fmt: skip
    if args.fidelity:
        fidelity(folder, args.device, corpus(64, seed=1))
    st_dtype = EMBEDDING_DTYPES[args.dtype]
    theirs = SentenceTransformer(folder, device=args.device, model_kwargs={"torch_dtype": st_dtype})
    ours: Embedder = build_embedder(
        folder, model_id=DEFAULT_EMBEDDING_MODEL, device=args.device, dtype=args.dtype
    )
    ours.start()

    def ours_embed(batch: list[str]) -> object:
        return ours.submit(batch).result()

    def theirs_embed(batch: list[str]) -> object:
        return theirs.encode(batch, batch_size=32, convert_to_numpy=True)

    runners = {"ours": ours_embed, "sentence-transformers": theirs_embed}
    for embed in runners.values():  # warm up both (allocator, oneDNN kernels)
        rate(embed, texts[:64], 32)
        rate(embed, texts[:8], 1)
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in range(args.rounds):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        for batch in (1, 32):
            for name in order:
                results.setdefault((name, batch), []).append(rate(runners[name], texts, batch))
    ours.shutdown()

    print(f"\nembeddings/s, median of {args.rounds} interleaved rounds of {len(texts)} texts "
          "(wall time; per CPU-second of this process in brackets):")  # fmt: skip
    print(f"{'batch':>5}  {'ours':>16}  {'sentence-transformers':>22}  {'ours / theirs':>17}")
    for batch in (1, 32):
        mine = [statistics.median(x) for x in zip(*results[("ours", batch)], strict=True)]
        ref = [
            statistics.median(x)
            for x in zip(*results[("sentence-transformers", batch)], strict=True)
        ]
        print(f"{batch:>5}  {mine[0]:>7.1f} ({mine[1]:>6.1f})  {ref[0]:>13.1f} ({ref[1]:>6.1f})  "
              f"{mine[0] / ref[0]:>6.2f}x ({mine[1] / ref[1]:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
