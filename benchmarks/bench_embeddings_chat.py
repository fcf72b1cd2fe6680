"""How much a busy embedder slows chat decoding on the same server.

Launches ``python -m server_ref serve`` (the default chat and embedding models), then in each
round streams one greedy chat completion of ``--tokens`` tokens (``ignore_eos``) twice: with
the server otherwise idle, and while ``--embed-clients`` clients keep sending embedding
requests of ``--batch`` paragraphs each, back to back. It reports the decode rate (tokens
after the first, per second of the stream after the first token) and the inter-token gaps
(median, p99, max) of both, and the embeddings/s the server delivered meanwhile; the order of
the two phases alternates between rounds. Medians over rounds.

    python benchmarks/bench_embeddings_chat.py [--rounds 3] [--tokens 128] [--embed-clients 2]
        [--batch 32] [--server-args '--device cpu']
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

PARAGRAPH = (
    "Retrieval-augmented generation embeds a corpus of passages, finds the ones closest to a "
    "question and hands them to a language model, which answers from them. "
)


@dataclass
class Decode:
    rate: float  # tokens/s after the first token
    gap_p50: float  # seconds between chunks
    gap_p99: float
    gap_max: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def launched(server_args: str) -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, "-m", "server_ref", "serve", "--port", str(port), "--no-web"]
    cmd += ["--log-level", "warning", *shlex.split(server_args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with status {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    yield url
                    return
            time.sleep(0.5)
        raise SystemExit("the server did not become healthy")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def decode(client: httpx.AsyncClient, tokens: int) -> Decode:
    body = {
        "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}],
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    times: list[float] = []
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"content"' in line:
                times.append(time.perf_counter())
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    return Decode(
        (len(times) - 1) / (times[-1] - times[0]),
        statistics.median(gaps),
        gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))],
        gaps[-1],
    )


async def embed_loop(client: httpx.AsyncClient, batch: int, stop: asyncio.Event) -> int:
    done = 0
    texts = [f"{i}: {PARAGRAPH * (1 + i % 3)}" for i in range(batch)]
    while not stop.is_set():
        r = await client.post("/v1/embeddings", json={"input": texts})
        r.raise_for_status()
        done += batch
    return done


async def busy_decode(url: str, tokens: int, clients: int, batch: int) -> tuple[Decode, float]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        stop = asyncio.Event()
        loops = [asyncio.create_task(embed_loop(client, batch, stop)) for _ in range(clients)]
        await asyncio.sleep(1.0)  # the embedder is busy before the stream starts
        start = time.perf_counter()
        result = await decode(client, tokens)
        elapsed = time.perf_counter() - start
        stop.set()
        embedded = sum(await asyncio.gather(*loops))
    return result, embedded / elapsed  # approximate: batches in flight at either end count


async def idle_decode(url: str, tokens: int) -> Decode:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        return await decode(client, tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--embed-clients", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--server-args", default="--device cpu")
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; server: "
          f"serve {args.server_args}; {args.embed_clients} embedding clients x {args.batch} "
          f"texts; {args.tokens} tokens per stream")  # fmt: skip
    idle: list[Decode] = []
    busy: list[Decode] = []
    rates: list[float] = []
    with launched(args.server_args) as url:
        asyncio.run(idle_decode(url, 16))  # warm-up
        asyncio.run(busy_decode(url, 16, args.embed_clients, args.batch))
        for r in range(args.rounds):
            phases = ["idle", "busy"] if r % 2 == 0 else ["busy", "idle"]
            for phase in phases:
                if phase == "idle":
                    idle.append(asyncio.run(idle_decode(url, args.tokens)))
                else:
                    result, rate = asyncio.run(
                        busy_decode(url, args.tokens, args.embed_clients, args.batch)
                    )
                    busy.append(result)
                    rates.append(rate)
    med = statistics.median
    print(f"\nmedians of {args.rounds} rounds:")
    print(f"{'':>22} {'decode tok/s':>12} {'gap p50 ms':>10} {'p99 ms':>8} {'max ms':>8}")
    for name, runs in (("idle server", idle), ("busy embedder", busy)):
        print(f"{name:>22} {med(d.rate for d in runs):>12.1f} "
              f"{1e3 * med(d.gap_p50 for d in runs):>10.1f} "
              f"{1e3 * med(d.gap_p99 for d in runs):>8.1f} "
              f"{1e3 * med(d.gap_max for d in runs):>8.1f}")  # fmt: skip
    slow = med(d.rate for d in busy) / med(d.rate for d in idle)
    print(f"decode rate while embedding: {slow:.2f}x of idle; embeddings/s meanwhile: "
          f"{med(rates):.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
