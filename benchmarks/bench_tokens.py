"""Local token counting against a ``/tokenize`` round trip, and tokenizer throughput.

Starts ``python -m server_ref serve`` on loopback (the default model, CPU), rebuilds its
tokenizer locally with ``client.tokenizer(model)``, then for 1 KB, 100 KB and 1 MB texts
times ``tokenizer.count(text)`` against ``client.tokenize(prompt=text)`` (the same count,
computed by the server: JSON both ways, HTTP on loopback) and checks they agree. It also
reports tokenizer throughput (MB/s) of the model's encoding and of tiktoken's
``cl100k_base`` (hosted models), and what fetching the tokenizer costs, cold (rank file
downloaded) and warm (rank file from the disk cache).

    python benchmarks/bench_tokens.py [--model smollm2-135m-instruct] [--json out.json]

Medians over repeats; the machine's other load shows in the numbers, so rerun to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sdk  # noqa: E402
from sdk.tokens import RankCache  # noqa: E402
from sdk.tokens.hosted import load_encoding  # noqa: E402

SIZES = {"1 KB": 1_000, "100 KB": 100_000, "1 MB": 1_000_000}
REPEATS = {"1 KB": 50, "100 KB": 10, "1 MB": 3}

PROSE = (
    "the model counts tokens locally so a budget is checked before anything is sent "
    "exact counts come from the same encoding and chat template the server uses"
)
WORDS = PROSE.split(" ")
SNIPPETS = [
    "def f(x):\n    return x ** 2\n",
    "héllo wörld 日本語 🎉 ",
    "SELECT id FROM t WHERE n = 42;\n",
    "1234567890 3.14159\n",
    '{"key": [1, 2, 3]}\n',
]


def make_text(size: int, seed: int = 7) -> str:
    """Prose with code, numbers and non-ASCII mixed in, cut to ``size`` UTF-8 bytes."""
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < size:
        piece = rng.choice(SNIPPETS) if rng.random() < 0.1 else rng.choice(WORDS) + " "
        parts.append(piece)
        length += len(piece.encode())
    return "".join(parts).encode()[:size].decode("utf-8", errors="ignore")


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def local_server(model: str) -> Iterator[str]:
    """``python -m server_ref serve`` on a free loopback port until the block ends."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "server_ref", "serve", "--model", model, "--device", "cpu",
        "--kv-cache-mib", "64", "--no-web", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit("server did not become healthy in 300 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def bench(model: str) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "sizes": {},
    }
    with local_server(model) as url, sdk.Client(base_url=f"{url}/v1", timeout=120) as client:
        model_id = client.models.list().data[0].id

        # fetching the tokenizer: cold (rank file downloaded) vs warm (disk cache)
        export = httpx.get(f"{url}/v1/models/{model_id}/tokenizer").json()
        RankCache().path(export["ranks_sha256"]).unlink(missing_ok=True)
        start = time.perf_counter()
        sdk.Client(base_url=f"{url}/v1").tokenizer(model_id)
        cold = time.perf_counter() - start
        warm = median_seconds(lambda: sdk.Client(base_url=f"{url}/v1").tokenizer(model_id), 3)
        results["fetch_tokenizer_s"] = {"cold": cold, "warm": warm}

        tok = client.tokenizer(model_id)
        cl100k = load_encoding("cl100k_base")
        for label, size in SIZES.items():
            text = make_text(size)
            local_count = tok.count(text)
            remote_count = client.tokenize(model=model_id, prompt=text).count
            if local_count != remote_count:
                raise SystemExit(f"{label}: local count {local_count} != server {remote_count}")
            repeats = REPEATS[label]
            local = median_seconds(lambda text=text: tok.count(text), repeats)
            remote = median_seconds(
                lambda text=text: client.tokenize(model=model_id, prompt=text), repeats
            )
            row = {
                "bytes": len(text.encode()),
                "tokens": local_count,
                "local_s": local,
                "tokenize_round_trip_s": remote,
                "ratio": remote / local,
                "model_encoding_mb_s": len(text.encode()) / local / 1e6,
            }
            if cl100k is not None:
                hosted = median_seconds(
                    lambda text=text: cl100k.encode(text, disallowed_special=()), repeats
                )
                row["cl100k_mb_s"] = len(text.encode()) / hosted / 1e6
            results["sizes"][label] = row
    return results


def report(results: dict[str, Any]) -> str:
    lines = [
        f"machine: {results['machine']}; server_ref on loopback, CPU",
        "fetch tokenizer: cold {cold:.2f} s (rank file downloaded), warm {warm:.2f} s "
        "(disk cache)".format(**results["fetch_tokenizer_s"]),
        "",
        f"{'text':>7} {'tokens':>8} {'local count':>12} {'/tokenize':>10} {'ratio':>7} "
        f"{'model enc':>10} {'cl100k':>8}",
    ]
    for label, row in results["sizes"].items():
        lines.append(
            f"{label:>7} {row['tokens']:>8} {row['local_s'] * 1e3:>9.2f} ms "
            f"{row['tokenize_round_trip_s'] * 1e3:>7.1f} ms {row['ratio']:>6.1f}x "
            f"{row['model_encoding_mb_s']:>5.1f} MB/s "
            f"{row.get('cl100k_mb_s', float('nan')):>4.1f} MB/s"
        )
    lines.append("ratio = /tokenize round trip time / local count time (same count, checked)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    results = bench(args.model)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
