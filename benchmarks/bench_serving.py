"""Drive OpenAI-compatible servers with concurrent streaming chat requests, side by side.

For each concurrency level it sends ``2 * concurrency`` (at least 4) greedy streaming
requests, at most ``concurrency`` in flight, and reports aggregate output tokens/s, time to
first token and inter-token latency (p50 / p99). Servers are either already running
(``--url NAME=http://host:port``) or launched by this script (``--launch NAME='command with
{port}'``); all stay up, idle, while the servers take turns at each level, so none shares the
CPU with another under load and a slow spell of a shared machine hits them alike.
``--rounds N`` repeats the sweep and reports medians. With two or more servers it prints the
ratio of each to the first (each / first). Traffic goes only to the URLs given (loopback for
launched servers).

    python benchmarks/bench_serving.py \\
        --launch ours='python -m server_ref serve --port {port} --device cpu' \\
        --llama-server PATH/TO/llama-server \\
        --launch llamacpp='VENV/bin/python -m llama_cpp.server --model GGUF --port {port} \\
            --n_threads 2 --interrupt_requests False'

``--llama-server BINARY`` launches llama.cpp's own C++ server on the same GGUF (``--gguf``,
default: the default model's cached file) with ``-t`` threads (default: the CPUs this
process may use) and one slot per request of the highest concurrency level.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PROMPTS = [
    "What is the capital of France?",
    "Explain what a transformer model is in one sentence.",
    "Write a haiku about the sea.",
    "Give me three tips for learning Python.",
    "Why is the sky blue?",
    "Summarize the plot of Romeo and Juliet.",
    "What are the benefits of regular exercise?",
    "Describe a cat to someone who has never seen one.",
]


@dataclass
class Result:
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    tokens: int = 0
    ok: bool = True


@dataclass
class Level:
    concurrency: int
    tokens_per_s: float
    ttft_p50: float
    ttft_p99: float
    itl_p50: float
    itl_p99: float
    failed: int


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


async def one(
    client: httpx.AsyncClient,
    model: str,
    prompt: str,
    max_tokens: int,
    extra: dict[str, object] | None = None,
) -> Result:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **(extra or {}),  # more request fields (bench_structured.py: response_format)
    }
    res = Result()
    start = last = time.perf_counter()
    chunks = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return Result(ok=False)
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if event.get("usage"):
                res.tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    now = time.perf_counter()
                    if chunks == 0:
                        res.ttft = now - start
                    else:
                        res.itl.append(now - last)
                    last = now
                    chunks += 1
    res.tokens = res.tokens or chunks
    return res


async def run_level(
    base_url: str,
    model: str,
    concurrency: int,
    max_tokens: int,
    extra: dict[str, object] | None = None,
) -> Level:
    n = max(4, 2 * concurrency)
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:

        async def task(i: int) -> Result:
            async with sem:
                try:
                    prompt = PROMPTS[i % len(PROMPTS)]
                    return await one(client, model, prompt, max_tokens, extra)
                except httpx.HTTPError:
                    return Result(ok=False)

        t0 = time.perf_counter()
        results = await asyncio.gather(*(task(i) for i in range(n)))
        wall = time.perf_counter() - t0
    good = [r for r in results if r.ok]
    ttfts = [r.ttft for r in good]
    itls = [x for r in good for x in r.itl]
    return Level(
        concurrency,
        sum(r.tokens for r in good) / wall,
        pct(ttfts, 0.5),
        pct(ttfts, 0.99),
        pct(itls, 0.5),
        pct(itls, 0.99),
        len(results) - len(good),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base_url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 600) -> str:
    """Poll /v1/models until it answers; return the first model id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited with status {proc.returncode} before it was ready")
        try:
            r = httpx.get(f"{base_url}/v1/models", timeout=2)
            if r.status_code == 200:
                return str(r.json()["data"][0]["id"])
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{base_url} was not ready after {timeout:.0f}s")


@contextlib.contextmanager
def server(url: str | None, command: str | None) -> Iterator[tuple[str, str]]:
    """Yield (base URL, model id) of a running server, launching it first if given a command."""
    proc = None
    if command is not None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            shlex.split(command.format(port=port)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    assert url is not None
    try:
        model = wait_ready(url, proc)
        asyncio.run(run_level(url, model, 1, 8))  # warm-up
        yield url, model
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def llama_server_command(binary: str, gguf: str, threads: int, slots: int) -> str:
    """The ``--launch`` command for llama.cpp's ``llama-server``: one slot per concurrent
    request (its context split evenly between them, 2048 tokens each), no prompt cache
    reuse across requests beyond its default."""
    args = [binary, "-m", gguf, "--port", "{port}", "-t", str(threads)]
    args += ["-np", str(slots), "-c", str(2048 * slots)]
    return shlex.join(args)


def machine() -> str:
    """The CPU model and the vector extensions that decide which kernels run (Linux)."""
    name, flags = platform.processor() or platform.machine(), set[str]()
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text()
        for line in info.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")
    shown = " ".join(f for f in wanted if f in flags) or "no AVX2"
    return f"{name} ({shown}), {len(os.sched_getaffinity(0))} CPUs"


def median_level(runs: list[Level]) -> Level:
    med = statistics.median
    return Level(
        runs[0].concurrency,
        med(r.tokens_per_s for r in runs),
        med(r.ttft_p50 for r in runs),
        med(r.ttft_p99 for r in runs),
        med(r.itl_p50 for r in runs),
        med(r.itl_p99 for r in runs),
        sum(r.failed for r in runs),
    )


def show(name: str, lv: Level) -> None:
    print(
        f"{name:>10} c={lv.concurrency:<3d} {lv.tokens_per_s:8.1f} tok/s  "
        f"TTFT p50 {lv.ttft_p50 * 1e3:8.1f} ms p99 {lv.ttft_p99 * 1e3:8.1f} ms  "
        f"ITL p50 {lv.itl_p50 * 1e3:7.1f} ms p99 {lv.itl_p99 * 1e3:7.1f} ms  "
        f"failed {lv.failed}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", action="append", default=[], metavar="NAME=URL")
    ap.add_argument("--launch", action="append", default=[], metavar="NAME=COMMAND")
    ap.add_argument("--concurrency", default="1,4,16,32")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument(
        "--rounds", type=int, default=1, help="repeat the sweep; report medians over rounds"
    )
    ap.add_argument(
        "--llama-server", metavar="BINARY", help="also launch llama.cpp's llama-server binary"
    )
    ap.add_argument("--gguf", help="the model file for --llama-server (default: the default model)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    specs: list[tuple[str, str | None, str | None]] = []
    for item in args.url:
        name, _, url = item.partition("=")
        specs.append((name, url.rstrip("/"), None))
    for item in args.launch:
        name, _, cmd = item.partition("=")
        specs.append((name, None, cmd))
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.llama_server:
        if args.gguf is None:  # imported only here: the script drives any server
            from server_ref.loading.registry import resolve_model

            args.gguf = str(resolve_model("smollm2-135m-instruct"))
        gguf = args.gguf
        command = llama_server_command(args.llama_server, gguf, args.threads, max(levels))
        specs.append(("llama-server", None, command))
    if not specs:
        ap.error("give at least one --url, --launch or --llama-server")
    print(f"machine: {machine()}, python {sys.version.split()[0]}")
    print(
        f"greedy chat, max_tokens {args.max_tokens}, 2 x concurrency requests per level, "
        f"servers taking turns at each level, {args.rounds} round(s)"
    )
    runs: dict[str, dict[int, list[Level]]] = {name: {c: [] for c in levels} for name, *_ in specs}
    with contextlib.ExitStack() as stack:
        running = {name: stack.enter_context(server(url, cmd)) for name, url, cmd in specs}
        for r in range(args.rounds):
            if args.rounds > 1:
                print(f"round {r + 1}")
            for c in levels:
                for name, (url, model) in running.items():
                    lv = asyncio.run(run_level(url, model, c, args.max_tokens))
                    runs[name][c].append(lv)
                    show(name, lv)
    results = {name: [median_level(by_level[c]) for c in levels] for name, by_level in runs.items()}
    if args.rounds > 1:
        print(f"\nmedians over {args.rounds} rounds:")
        for name, lvs in results.items():
            for lv in lvs:
                show(name, lv)
    if len(results) > 1:
        base_name, base = next(iter(results.items()))
        for name, other in list(results.items())[1:]:
            print(f"\nratios {name} / {base_name}:")
            for a, b in zip(base, other, strict=True):
                print(
                    f"  c={a.concurrency:<3d} "
                    f"throughput x{b.tokens_per_s / a.tokens_per_s:6.2f}  "
                    f"TTFT p50 x{b.ttft_p50 / a.ttft_p50:6.3f}  "
                    f"ITL p50 x{b.itl_p50 / a.itl_p50:6.3f}"
                )


if __name__ == "__main__":
    main()
