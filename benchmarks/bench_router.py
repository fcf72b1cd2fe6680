"""Prefix affinity against round robin: multi-turn conversations over server_ref replicas.

Launches ``--replicas`` (3) ``python -m server_ref serve`` processes (the default model
unless ``--model``; one intra-op thread each) and runs the same kind of workload through an
``sdk.AsyncRouter`` once per strategy, in one run: ``--conversations`` (40) conversations of
``--turns`` (4) user turns each, at most ``--concurrency`` (6) at a time. Each conversation
has one of four long system prompts (apps that share a prompt) and its own questions; every
turn resends the whole conversation, the model's replies included, as chat apps do.

Reported per strategy: the replicas' prefix-cache hit rate (prompt tokens found cached /
looked up, from their ``/metrics`` counters before and after), median and p90 time to first
token (the first streamed chunk with text, measured by the client), wall time, and how the
calls spread over the replicas. Each strategy's conversations start with their own tag, so
neither finds what the other left in the caches. ``--rounds 2`` runs the strategies in both
orders (RR, PA, PA, RR) and reports medians.

    python benchmarks/bench_router.py                      # 3 replicas of the default model
    python benchmarks/bench_router.py --url http://h1:8000/v1 --url http://h2:8000/v1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from sdk import AsyncRouter

STRATEGIES = ("round_robin", "prefix_affinity")
TOPICS = [
    "returns", "shipping", "a broken zipper", "gift cards", "sizes", "a late parcel",
    "colours", "washing instructions", "discounts", "a missing button",
]  # fmt: skip
APPS = ["an outdoor clothing shop", "a bicycle repair service", "a bakery", "a library"]
RULES = [
    "Answer in at most two sentences.",
    "Never promise a refund; say a colleague will check.",
    "Greet the customer by saying hello only in the first reply.",
    "If the question is unclear, ask one short question back.",
    "Mention the opening hours, nine to five on weekdays, when relevant.",
    "Do not discuss prices of other shops.",
    "Use plain words; avoid jargon.",
    "Offer the help page at the end when the customer seems lost.",
]


def system_prompt(app: str) -> str:
    lines = [f"You are the customer assistant of {app}."]
    lines += [f"Rule {i + 1}: {rule}" for i, rule in enumerate(RULES)]
    lines += [f"Background: {app} has served its town for {20 + i} years." for i in range(6)]
    return "\n".join(lines)


@dataclass
class Run:
    strategy: str
    ttft: list[float]
    wall: float
    hits: float
    queries: float
    per_replica: Counter[str]
    failed: int
    moved: int = 0  # turns that went to another replica than the turn before

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else float("nan")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] if xs else float("nan")


def prefix_counters(urls: list[str]) -> tuple[float, float]:
    """(hit tokens, queried tokens) summed over the replicas' /metrics."""
    hits = queries = 0.0
    for url in urls:
        root = url.removesuffix("/v1")
        for line in httpx.get(f"{root}/metrics", timeout=30).text.splitlines():
            if line.startswith("server_ref:prefix_cache_hits_total"):
                hits += float(line.rpartition(" ")[2])
            elif line.startswith("server_ref:prefix_cache_queries_total"):
                queries += float(line.rpartition(" ")[2])
    return hits, queries


async def conversation(
    router: AsyncRouter, model: str, tag: str, n: int, args: argparse.Namespace, run: Run
) -> None:
    messages = [{"role": "system", "content": f"[{tag}] " + system_prompt(APPS[n % len(APPS)])}]
    previous = None
    for turn in range(args.turns):
        topic = TOPICS[(n + turn) % len(TOPICS)]
        messages.append({"role": "user", "content": f"Customer {n}, question {turn + 1}: {topic}?"})
        start = time.perf_counter()
        stream = await router.chat.completions.create(
            model=model, messages=messages, max_tokens=args.max_tokens, temperature=0, stream=True
        )
        parts: list[str] = []
        async with stream:
            async for text in stream.text_stream:
                if not parts:
                    run.ttft.append(time.perf_counter() - start)
                parts.append(text)
        endpoint = stream.response_info.endpoint or "?"
        run.per_replica[endpoint] += 1
        run.moved += previous is not None and endpoint != previous
        previous = endpoint
        messages.append({"role": "assistant", "content": "".join(parts)})


async def run_strategy(
    urls: list[str], model: str, strategy: str, tag: str, args: argparse.Namespace
) -> Run:
    run = Run(strategy, [], 0.0, 0.0, 0.0, Counter(), 0)
    hits0, queries0 = prefix_counters(urls)
    sem = asyncio.Semaphore(args.concurrency)
    async with AsyncRouter(urls, strategy=strategy, timeout=600) as router:

        async def one(n: int) -> None:
            async with sem:
                try:
                    await conversation(router, model, tag, n, args, run)
                except Exception as exc:  # counted and reported, never hidden
                    run.failed += 1
                    print(f"  conversation {n} failed: {exc}", file=sys.stderr)

        start = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(args.conversations)))
        run.wall = time.perf_counter() - start
    hits1, queries1 = prefix_counters(urls)
    run.hits, run.queries = hits1 - hits0, queries1 - queries0
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def replicas(args: argparse.Namespace) -> Iterator[list[str]]:
    if args.url:
        yield list(args.url)
        return
    procs, urls = [], []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread each: they share the CPU cores
    try:
        for _ in range(args.replicas):
            port = free_port()
            cmd = [sys.executable, "-m", "server_ref", "serve", "--port", str(port)]
            cmd += ["--device", args.device, "--log-level", "warning"]
            if args.model:
                cmd += ["--model", args.model]
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL))
            urls.append(f"http://127.0.0.1:{port}/v1")
        for url, proc in zip(urls, procs, strict=True):
            deadline = time.monotonic() + 600
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"error: the replica for {url} exited ({proc.returncode})")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url.removesuffix("/v1") + "/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"error: {url} not healthy after 600 s")
                time.sleep(0.5)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", help="a running server's base URL (repeat)")
    parser.add_argument("--model", help="model name or GGUF path for launched replicas")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(
        f"# {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.conversations} conversations x {args.turns} turns, concurrency "
        f"{args.concurrency}, max_tokens {args.max_tokens}"
    )
    with replicas(args) as urls:
        model = httpx.get(urls[0] + "/models", timeout=30).json()["data"][0]["id"]
        print(f"# {len(urls)} replicas of {model}")
        runs: dict[str, list[Run]] = {s: [] for s in STRATEGIES}
        for r in range(args.rounds):
            order = STRATEGIES if r % 2 == 0 else STRATEGIES[::-1]
            for strategy in order:
                tag = f"run {r}-{strategy}"
                run = asyncio.run(run_strategy(urls, model, strategy, tag, args))
                runs[strategy].append(run)
                print(
                    f"  round {r + 1} {strategy}: hit rate {run.hit_rate:.1%}, TTFT p50 "
                    f"{statistics.median(run.ttft):.3f} s, wall {run.wall:.1f} s, "
                    f"turns moved {run.moved}",
                    file=sys.stderr,
                )
    print("| strategy | calls | prefix-cache hit rate | TTFT p50 (s) | TTFT p90 (s) | wall (s) "
          "| calls per replica | turns moved | failed |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for strategy, done in runs.items():
        ttft_p50 = statistics.median(statistics.median(r.ttft) for r in done)
        ttft_p90 = statistics.median(pct(r.ttft, 0.9) for r in done)
        hit_rate = statistics.median(r.hit_rate for r in done)
        wall = statistics.median(r.wall for r in done)
        spread = "/".join(str(n) for _, n in sorted(done[-1].per_replica.items()))
        calls = sum(done[-1].per_replica.values())
        failed = sum(r.failed for r in done)
        moved = statistics.median(r.moved for r in done)
        print(
            f"| {strategy} | {calls} | {hit_rate:.1%} | {ttft_p50:.3f} | {ttft_p90:.3f} "
            f"| {wall:.1f} | {spread} | {moved:g} | {failed} |"
        )


if __name__ == "__main__":
    main()
