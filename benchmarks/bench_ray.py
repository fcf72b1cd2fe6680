"""The server on Ray Serve against the plain server, and prefix affinity against Serve's routing.

Three comparisons, each between servers this script launches on 127.0.0.1 (the chat model of
``--model``, no embedding model) and that stay up, idle, while they take turns:

(a) the proxy's cost: ``serve --ray --replicas 1`` against the plain server (both with all the
    machine's threads): output tok/s at concurrency 1 and 16, TTFT p50, and their ratio;
(b) scaling out on one machine: ``--replicas 2`` (one thread each) against one plain server
    with two threads, at the same levels;
(c) routing: ``--router prefix`` against ``--router default``, two replicas each, on
    ``--conversations`` (40) chats of ``--turns`` (4) turns, ``--concurrency`` (6) at a time,
    as benchmarks/bench_router.py runs them (four apps' long system prompts, every turn resends
    the conversation; ``--context-chars N`` adds N characters that only one conversation has,
    its customer's orders): the replicas' prefix-cache hit rate (prompt tokens found cached /
    looked up, read from every replica through Ray), TTFT p50 and p90, wall time.

Each comparison runs once per ``--ingresses`` entry (``proxy``: Serve's HTTP proxy, ``haproxy``:
HAProxy before replicas that serve HTTP themselves, ``serve --ray --ingress``), one Ray
instance up at a time in (a) and (b).

Levels are ``bench_serving.run_level`` (greedy streaming chat, 2 x concurrency requests).
``--rounds N`` repeats everything with the servers' order reversed every other round and
reports medians; each round's conversations carry their own tag, so no round finds another's
prefixes cached.

    python benchmarks/bench_ray.py                                      # the default model
    python benchmarks/bench_ray.py --model tiny.gguf --quick            # does it run at all
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_router import APPS, TOPICS, pct, system_prompt
from bench_serving import Level, free_port, machine, median_level, run_level, show, wait_ready

# run as a Ray driver in a subprocess (a process joins one Ray instance; two are running)
STATS = """
import json, sys
from server_ref.deploy.options import local_ray_env
local_ray_env()
import ray
ray.init(address=sys.argv[1], namespace="serve", log_to_driver=False, logging_level="ERROR")
names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
         if a["name"].startswith("SERVE_REPLICA::server_ref#server_ref#")]
handles = [ray.get_actor(n, namespace="serve") for n in names]
print(json.dumps(ray.get([h.record_routing_stats.remote() for h in handles], timeout=60)))
"""


TWO = ["--ray", "--replicas", "2", "--router"]  # two replicas, one thread each, and a router


@dataclass
class Server:
    name: str
    url: str
    model: str
    ray_address: str | None


@contextlib.contextmanager
def launch(name: str, flags: list[str], args: argparse.Namespace, threads: int) -> Iterator[Server]:
    """A server on a free port, ready, all its replicas up, warmed up; stopped afterwards."""
    port = free_port()
    cmd = [sys.executable, "-m", "server_ref", "serve", "--port", str(port), "--model", args.model]
    cmd += ["--embedding-model", "none", "--device", "cpu", "--log-level", "warning", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "RAY_AUTH_MODE": "token"}
    log = tempfile.NamedTemporaryFile(prefix=f"bench-ray-{name}-", suffix=".log")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        model = wait_ready(url, proc)
        address = None
        if "--ray" in flags:
            address = _ray_address(Path(log.name))
            replicas = int(flags[flags.index("--replicas") + 1])
            deadline = time.monotonic() + 600
            while len(replica_stats(address)) < replicas:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name}: not {replicas} replicas after 600 s")
                time.sleep(2)
        asyncio.run(run_level(url, model, 2, 8))  # warm-up (every replica, likely)
        print(f"# {name}: {' '.join(flags) or 'plain server'}, {threads} thread(s)", flush=True)
        yield Server(name, url, model, address)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _ray_address(log: Path, within: float = 120) -> str:
    deadline = time.monotonic() + within
    while not (found := re.search(r"\(Ray at ([\d.]+:\d+)\)", log.read_text(errors="replace"))):
        if time.monotonic() > deadline:
            raise SystemExit(f"no Ray address in {log}")
        time.sleep(0.5)
    return found[1]


def replica_stats(address: str) -> list[dict[str, Any]]:
    """Every engine replica's ``record_routing_stats``, read through Ray."""
    proc = subprocess.run(
        [sys.executable, "-c", STATS, address],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )
    if proc.returncode != 0:
        raise SystemExit(f"reading the replicas' stats failed:\n{proc.stderr[-2000:]}")
    stats: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return stats


@dataclass
class Chats:
    ttft: list[float] = field(default_factory=list)
    wall: float = 0.0
    hits: int = 0
    queries: int = 0
    failed: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else float("nan")


def customer_record(n: int, chars: int) -> str:
    """About ``chars`` characters of text that only conversation ``n`` has (its customer's
    orders), as a support chat or a chat over a document carries: the prefix that only one
    replica can have cached."""
    lines = [f"\nThe orders of customer {n}:"]
    k = 0
    while sum(map(len, lines)) < chars:
        k += 1
        item = TOPICS[(n * 7 + k) % len(TOPICS)]
        lines.append(
            f"\nOrder {n}-{k}: {1 + (n + k) % 4} item(s) about {item}, day {(n * k) % 28 + 1}."
        )
    return "".join(lines) if chars else ""


async def conversation(
    http: httpx.AsyncClient, server: Server, tag: str, n: int, args: argparse.Namespace, run: Chats
) -> None:
    system = system_prompt(APPS[n % len(APPS)])[: args.system_chars]
    system += customer_record(n, args.context_chars)
    messages = [{"role": "system", "content": f"[{tag}] {system}"}]
    for turn in range(args.turns):
        topic = TOPICS[(n + turn) % len(TOPICS)]
        messages.append({"role": "user", "content": f"Customer {n}, question {turn + 1}: {topic}?"})
        body = {"model": server.model, "messages": messages, "max_tokens": args.max_tokens}
        body |= {"temperature": 0, "stream": True}
        start = time.perf_counter()
        parts: list[str] = []
        async with http.stream("POST", "/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                for choice in json.loads(line[6:]).get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        if not parts:
                            run.ttft.append(time.perf_counter() - start)
                        parts.append(text)
        messages.append({"role": "assistant", "content": "".join(parts)})


def run_chats(server: Server, tag: str, args: argparse.Namespace) -> Chats:
    assert server.ray_address is not None
    before = replica_stats(server.ray_address)
    run = Chats()

    async def main() -> None:
        gate = asyncio.Semaphore(args.concurrency)
        async with httpx.AsyncClient(base_url=server.url, timeout=600) as http:

            async def one(n: int) -> None:
                async with gate:
                    try:
                        await conversation(http, server, tag, n, args, run)
                    except httpx.HTTPError as exc:  # counted and reported, never hidden
                        run.failed += 1
                        print(f"  conversation {n} failed: {exc!r}", file=sys.stderr)

            start = time.perf_counter()
            await asyncio.gather(*(one(n) for n in range(args.conversations)))
            run.wall = time.perf_counter() - start

    asyncio.run(main())
    after = replica_stats(server.ray_address)
    for key, total in (("prefix_cache_hits", "hits"), ("prefix_cache_queries", "queries")):
        setattr(run, total, sum(s[key] for s in after) - sum(s[key] for s in before))
    return run


def compare_levels(
    servers: list[Server], levels: list[int], rounds: int, args: argparse.Namespace
) -> dict[str, list[Level]]:
    runs: dict[str, dict[int, list[Level]]] = {s.name: {c: [] for c in levels} for s in servers}
    for r in range(rounds):
        for c in levels:
            for server in servers if r % 2 == 0 else servers[::-1]:
                level = asyncio.run(run_level(server.url, server.model, c, args.max_tokens))
                runs[server.name][c].append(level)
                show(server.name, level)
    return {name: [median_level(by[c]) for c in levels] for name, by in runs.items()}


def report_ratio(title: str, base: list[Level], other: list[Level]) -> None:
    print(f"\n{title} (medians):")
    for a, b in zip(base, other, strict=True):
        print(
            f"  c={a.concurrency:<3d} {a.tokens_per_s:7.1f} -> {b.tokens_per_s:7.1f} tok/s "
            f"(x{b.tokens_per_s / a.tokens_per_s:.3f})  TTFT p50 {a.ttft_p50 * 1e3:7.1f} -> "
            f"{b.ttft_p50 * 1e3:7.1f} ms (x{b.ttft_p50 / a.ttft_p50:.3f})  "
            f"failed {a.failed}/{b.failed}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--concurrency-levels", default="1,16")
    ap.add_argument("--max-tokens", type=int, default=64, help="per request in (a) and (b)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conversations", type=int, default=40)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=6, help="conversations at a time in (c)")
    ap.add_argument("--chat-tokens", type=int, default=24, help="max_tokens per turn in (c)")
    ap.add_argument("--system-chars", type=int, default=None, help="cut the system prompts")
    ap.add_argument(
        "--context-chars",
        type=int,
        default=0,
        help="add this much text of its own to each conversation's system prompt in (c)",
    )
    ap.add_argument("--parts", default="abc", help="which comparisons to run")
    ap.add_argument("--ingresses", default="proxy,haproxy", help="serve --ray --ingress values")
    ap.add_argument(
        "--quick", action="store_true", help="one round, small levels: a check that it runs"
    )
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.conversations, args.turns, args.concurrency_levels = 1, 6, 2, "1,4"
        args.max_tokens = args.chat_tokens = 8
        args.system_chars = args.system_chars or 120
    levels = [int(c) for c in args.concurrency_levels.split(",")]
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {machine()}, python {sys.version.split()[0]}, model {args.model}")
    print(f"{args.rounds} round(s), servers in turn (reversed every other round), medians")
    ingresses = args.ingresses.split(",")
    if "a" in args.parts or "b" in args.parts:
        with launch("plain", [], args, cores) as plain:
            for ingress in ingresses if "a" in args.parts else ():
                name, flags = (
                    f"serve-1-{ingress}",
                    ["--ray", "--replicas", "1", "--ingress", ingress],
                )
                print(f"\n(a) Serve with 1 replica ({ingress}) against the plain server")
                with launch(name, flags, args, cores) as one:
                    result = compare_levels([plain, one], levels, args.rounds, args)
                report_ratio(f"(a) {name} / plain", result["plain"], result[name])
            for ingress in ingresses if "b" in args.parts else ():
                name, flags = f"serve-2-{ingress}", [*TWO, "default", "--ingress", ingress]
                print(f"\n(b) 2 replicas x 1 thread ({ingress}) against 1 server x {cores} threads")
                with launch(name, flags, args, 1) as two:
                    result = compare_levels([plain, two], levels, args.rounds, args)
                report_ratio(f"(b) {name} / plain", result["plain"], result[name])
    for ingress in ingresses if "c" in args.parts else ():
        compare_routers(args, ingress)


def compare_routers(args: argparse.Namespace, ingress: str) -> None:
    print(
        f"\n(c) {args.conversations} conversations x {args.turns} turns over 2 replicas ({ingress})"
    )
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(launch(r, [*TWO, r, "--ingress", ingress], args, 1))
            for r in ("default", "prefix")
        ]
        runs: dict[str, list[Chats]] = {s.name: [] for s in servers}
        for r in range(args.rounds):
            for server in servers if r % 2 == 0 else servers[::-1]:
                run = run_chats(server, f"round {r} {server.name}", args)
                runs[server.name].append(run)
                print(
                    f"  {server.name:>8}: hit rate {run.hit_rate:6.1%}  TTFT p50 "
                    f"{statistics.median(run.ttft) * 1e3:7.1f} ms  wall {run.wall:6.1f} s  "
                    f"failed {run.failed}",
                    flush=True,
                )
    print(
        "\n| router | ingress | prefix-cache hit rate | TTFT p50 (ms) | TTFT p90 (ms) | wall (s) "
        "| failed |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, done in runs.items():
        hit = statistics.median(r.hit_rate for r in done)
        p50 = statistics.median(statistics.median(r.ttft) for r in done) * 1e3
        p90 = statistics.median(pct(r.ttft, 0.9) for r in done) * 1e3
        wall = statistics.median(r.wall for r in done)
        failed = sum(r.failed for r in done)
        print(f"| {name} | {ingress} | {hit:.1%} | {p50:.1f} | {p90:.1f} | {wall:.1f} | {failed} |")


if __name__ == "__main__":
    main()
