"""Soak test: minutes of mixed traffic against a server this script launches, then a verdict.

At ``--concurrency`` (default 32) workers send, for ``--minutes`` (default 20): streamed and
non-streamed chat and completion requests, streams cancelled after a few chunks, prompts
longer than the context and malformed JSON. It samples the server process's RSS, and at the
end reports:

* RSS growth from minute ``--warmup-minutes`` (default 5; a quarter of the run when that is
  shorter) to the end of the traffic window (``--minutes``), in percent -- goal under 5 %;
  the RSS once the requests still queued then have drained is printed too;
* KV cache blocks still in use once the traffic has stopped (``/metrics``) -- goal 0;
* responses with a 5xx status (and error events in streams) -- goal 0;
* the error rate of valid requests (anything but a complete answer, or a clean cancel) --
  goal 0; an over-long prompt or bad JSON must get a 400 and counts as such.

Finally it stops the server with SIGTERM and reports its exit status. All traffic goes to
127.0.0.1. ``--model`` takes a known model name or a GGUF path (the tests' tiny model:
``tests/kit/tinymodel.py``).

    python benchmarks/soak.py                      # 20 minutes, the default model
    python benchmarks/soak.py --minutes 2 --model tiny.gguf --serve-args '--kv-cache-mib 64'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serving import PROMPTS  # the same questions the serving benchmark asks

# kind -> weight
MIX = {"stream": 30, "complete": 25, "cancel": 15, "stream_completion": 10, "overlong": 10}
MIX["bad_json"] = 10
VALID = {"stream", "complete", "cancel", "stream_completion"}


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)  # by kind: not the expected outcome
    status: Counter[int] = field(default_factory=Counter)
    error_events: int = 0
    examples: list[str] = field(default_factory=list)
    seconds: dict[str, list[float]] = field(default_factory=dict)  # latency by kind

    def fail(self, kind: str, why: str) -> None:
        self.failed[kind] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{kind}: {why}")


class Traffic:
    def __init__(self, client: httpx.AsyncClient, model: str, context: int, args: Any) -> None:
        self.client, self.model, self.context, self.args = client, model, context, args
        self.tally = Tally()

    def chat(self, rng: random.Random, stream: bool) -> dict[str, object]:
        prompt = f"{rng.choice(PROMPTS)} (request {rng.randrange(10**6)})"
        body: dict[str, object] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": rng.randint(4, self.args.max_tokens),
            "stream": stream,
        }
        if rng.random() < 0.5:
            body.update(temperature=0.8, seed=rng.randrange(1000))
        else:
            body["temperature"] = 0
        return body

    async def one(self, rng: random.Random) -> None:
        kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        self.tally.sent[kind] += 1
        start = time.monotonic()
        try:
            await getattr(self, kind)(rng, kind)
        except (httpx.HTTPError, ValueError) as exc:
            elapsed = time.monotonic() - start
            self.tally.fail(kind, f"{type(exc).__name__} after {elapsed:.0f} s: {exc}")
        self.tally.seconds.setdefault(kind, []).append(time.monotonic() - start)

    async def stream(
        self, rng: random.Random, kind: str, path: str = "/v1/chat/completions"
    ) -> None:
        body = self.chat(rng, stream=True)
        stop_after = rng.randint(2, 6) if kind == "cancel" else None
        if path == "/v1/completions":
            body["prompt"] = body.pop("messages")[0]["content"]  # type: ignore[index]
        async with self.client.stream("POST", path, json=body) as r:
            self.tally.status[r.status_code] += 1
            if r.status_code != 200:
                self.tally.fail(kind, f"status {r.status_code}: {(await r.aread())[:200]!r}")
                return
            finished, done, n = False, False, 0
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    self.tally.error_events += 1
                    self.tally.fail(kind, f"error event {event['error']}")
                    return
                n += 1
                if n == stop_after:
                    return  # leaving the block closes the connection mid-stream
                finished = finished or any(c.get("finish_reason") for c in event["choices"])
            if not (finished and done):
                self.tally.fail(kind, f"stream ended early (finish {finished}, [DONE] {done})")

    async def cancel(self, rng: random.Random, kind: str) -> None:
        await self.stream(rng, kind)

    async def stream_completion(self, rng: random.Random, kind: str) -> None:
        await self.stream(rng, kind, "/v1/completions")

    async def complete(self, rng: random.Random, kind: str) -> None:
        r = await self.client.post("/v1/chat/completions", json=self.chat(rng, stream=False))
        self.tally.status[r.status_code] += 1
        if r.status_code != 200 or not r.json()["choices"][0]["finish_reason"]:
            self.tally.fail(kind, f"status {r.status_code}: {r.text[:200]}")

    async def overlong(self, rng: random.Random, kind: str) -> None:
        body = self.chat(rng, stream=rng.random() < 0.5)
        body["messages"] = [{"role": "user", "content": "hello " * (self.context + 50)}]
        r = await self.client.post("/v1/chat/completions", json=body)
        self.tally.status[r.status_code] += 1
        if r.status_code != 400:
            self.tally.fail(kind, f"status {r.status_code}, expected 400: {r.text[:200]}")

    async def bad_json(self, rng: random.Random, kind: str) -> None:
        broken = b'{"model": "m", "messages": [{"role": "user", "content": "hi"'
        headers = {"content-type": "application/json"}
        r = await self.client.post("/v1/chat/completions", content=broken, headers=headers)
        self.tally.status[r.status_code] += 1
        if r.status_code != 400:
            self.tally.fail(kind, f"status {r.status_code}, expected 400: {r.text[:200]}")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "server_ref", "serve", "--model", args.model, "--no-web"]
    # info: one access line per request (method, path, status, milliseconds) in the log
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
    cmd += shlex.split(args.serve_args)
    print("launching:", shlex.join(cmd), flush=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


async def wait_healthy(client: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode} while starting")
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)
    raise SystemExit("the server did not become healthy within 600 s")


async def gauges(client: httpx.AsyncClient) -> dict[str, float]:
    text = (await client.get("/metrics")).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("server_ref:") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name.split("{")[0]] = float(value)
    return out


async def soak(args: argparse.Namespace) -> int:
    log = Path(tempfile.mkdtemp(prefix="soak-")) / "server.log"
    proc, base_url = launch(args, log)
    limits = httpx.Limits(max_connections=args.concurrency + 8)
    timeout = httpx.Timeout(600, connect=30)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as client:
        await wait_healthy(client, proc)
        card = (await client.get("/v1/models")).json()["data"][0]
        traffic = Traffic(client, card["id"], card["max_model_len"], args)
        samples: list[tuple[float, float]] = []
        start = time.monotonic()
        end = start + args.minutes * 60

        async def worker(i: int) -> None:
            rng = random.Random(args.seed * 1000 + i)
            while time.monotonic() < end:
                await traffic.one(rng)

        async def sampler() -> None:
            next_report = 60.0
            while time.monotonic() < end:
                t = time.monotonic() - start
                samples.append((t, rss_mib(proc.pid)))
                if t >= next_report:
                    next_report += 60
                    rss = samples[-1][1]
                    print(f"{t / 60:5.1f} min  {progress(traffic.tally)}  rss {rss:.1f} MiB")
                await asyncio.sleep(min(args.sample_every, max(end - time.monotonic(), 0)))
            # the end of the window, under the same load as the sample at the start: the
            # requests still queued drain afterwards (for minutes when the queue is long)
            # through batch shapes a full queue seldom makes, with their own new kernels
            samples.append((time.monotonic() - start, rss_mib(proc.pid)))

        await asyncio.gather(sampler(), *(worker(i) for i in range(args.concurrency)))
        drained = rss_mib(proc.pid)
        idle = await settle(client)
    stopped = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    status = proc.wait(timeout=120)
    print(f"RSS once the last requests had drained: {drained:.0f} MiB")
    return report(args, traffic.tally, samples, idle, status, time.monotonic() - stopped, log)


def progress(tally: Tally) -> str:
    five_xx = sum(n for status, n in tally.status.items() if status >= 500)
    return f"sent {sum(tally.sent.values())}  failed {sum(tally.failed.values())}  5xx {five_xx}"


async def settle(client: httpx.AsyncClient) -> dict[str, float]:
    """The gauges once nothing runs or waits (up to 30 s after the traffic stopped)."""
    deadline = time.monotonic() + 30
    while True:
        g = await gauges(client)
        busy = g["server_ref:num_requests_running"] + g["server_ref:num_requests_waiting"]
        if (busy == 0 and g["server_ref:kv_cache_usage_perc"] == 0) or time.monotonic() > deadline:
            return g
        await asyncio.sleep(0.2)


def report(
    args: argparse.Namespace,
    tally: Tally,
    samples: list[tuple[float, float]],
    idle: dict[str, float],
    exit_status: int,
    exit_s: float,
    log: Path,
) -> int:
    warmup = min(args.warmup_minutes * 60, args.minutes * 60 / 4)
    base = next((rss for t, rss in samples if t >= warmup), samples[-1][1])
    growth = 100 * (samples[-1][1] - base) / base
    valid = sum(n for k, n in tally.sent.items() if k in VALID)
    valid_failed = sum(n for k, n in tally.failed.items() if k in VALID)
    five_xx = sum(n for s, n in tally.status.items() if s >= 500)
    kv = idle["server_ref:kv_cache_usage_perc"]
    print(f"\nsoak: {args.minutes:g} min, concurrency {args.concurrency}, model {args.model}")
    print(f"requests sent by kind: {dict(sorted(tally.sent.items()))}")
    print(f"HTTP statuses: {dict(sorted(tally.status.items()))}")
    latency = ", ".join(
        f"{k} {sorted(v)[len(v) // 2]:.1f}/{max(v):.1f}" for k, v in sorted(tally.seconds.items())
    )
    print(f"seconds per request by kind (median/max): {latency}")
    every = max(1, len(samples) // 12)
    print("RSS (MiB) over time:", ", ".join(f"{t / 60:.1f}m={r:.0f}" for t, r in samples[::every]))
    running, waiting = (idle[f"server_ref:num_requests_{k}"] for k in ("running", "waiting"))
    valid_rate = 100 * valid_failed / max(valid, 1)
    overlong, bad_json = tally.failed["overlong"], tally.failed["bad_json"]
    checks = [
        (f"RSS growth from {warmup / 60:g} min to the end", f"{growth:+.2f} %", growth < 5),
        ("KV cache usage after the traffic (0: no block leaked)", f"{kv:g}", kv == 0),
        ("requests left running / waiting", f"{running:g} / {waiting:g}", running + waiting == 0),
        ("5xx responses", str(five_xx), five_xx == 0),
        ("error events in streams", str(tally.error_events), tally.error_events == 0),
        (
            "valid requests failed",
            f"{valid_failed} of {valid} ({valid_rate:.3f} %)",
            not valid_failed,
        ),
        (
            "over-long prompts / bad JSON without a 400",
            f"{overlong} / {bad_json}",
            not overlong + bad_json,
        ),
        ("server exit status after SIGTERM", f"{exit_status} in {exit_s:.1f} s", exit_status == 0),
    ]
    for name, value, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {value}")
    for example in tally.examples:
        print(f"  e.g. {example}")
    print(f"server log: {log}")
    return 0 if all(ok for _, _, ok in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--serve-args", default="", help="more flags for `server_ref serve`")
    parser.add_argument("--max-tokens", type=int, default=48, help="upper bound per request")
    parser.add_argument("--sample-every", type=float, default=5.0, help="RSS sampling, seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    return asyncio.run(soak(args))


if __name__ == "__main__":
    raise SystemExit(main())
