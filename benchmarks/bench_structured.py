"""Structured output under load: aggregate tok/s with every request constrained by a JSON
schema against the same requests unconstrained, side by side on one server (issue 10).

At concurrency 16 (``--concurrency``), 2 x concurrency greedy streaming chat requests per
run, the same prompts and ``max_tokens`` both ways. The two runs take turns (their order
swaps every round) and ``--rounds`` repeats them; the report gives each round and the
medians, and the ratio constrained / unconstrained (the goal: at least 0.8).

For a like-for-like count of tokens, unconstrained requests set ``ignore_eos`` and the
default schema (a list of at least 40 people records: strings, a bounded integer, an enum)
cannot be complete within ``max_tokens``, so every request of both runs generates exactly
``max_tokens`` tokens and the difference is what the grammar costs per token: the mask fill
and its use in the sampler. ``--schema FILE`` measures another schema (its replies may then
be shorter). Afterwards ``bench_constraints.py`` reports grammar compile time per schema and
per-token mask time on the same vocabulary, while nothing else runs on the server.

    python benchmarks/bench_structured.py --rounds 3
    python benchmarks/bench_structured.py --url http://127.0.0.1:8000 --schema my_schema.json

Traffic goes only to the URL given, or to the server this script launches on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_constraints import machine
from bench_serving import Level, median_level, run_level, server, show

PEOPLE = {
    "type": "object",
    "properties": {
        "people": {
            "type": "array",
            "minItems": 40,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 24},
                    "age": {"type": "integer", "minimum": 0, "maximum": 120},
                    "city": {"type": "string", "maxLength": 24},
                    "job": {"enum": ["engineer", "teacher", "doctor", "artist", "farmer"]},
                },
                "required": ["name", "age", "city", "job"],
            },
        }
    },
    "required": ["people"],
}
LAUNCH = "python -m server_ref serve --port {port} --device cpu --no-web"


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "bench", "schema": schema, "strict": True},
        }
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running server (default: launch one)")
    ap.add_argument("--launch", default=LAUNCH, help="command with {port}")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--schema", type=Path, help="a JSON schema file (default: people records)")
    ap.add_argument("--skip-constraints", action="store_true", help="no bench_constraints run")
    args = ap.parse_args()
    schema = json.loads(args.schema.read_text()) if args.schema else PEOPLE
    runs = {
        "free": {"ignore_eos": True},
        "schema": {**response_format(schema), "ignore_eos": True},
    }
    print(f"machine: {machine()} (possibly shared with other jobs)")
    print(
        f"greedy streaming chat, concurrency {args.concurrency}, {2 * args.concurrency} "
        f"requests per run, max_tokens {args.max_tokens}, {args.rounds} rounds, "
        f"schema: {args.schema or 'people records (minItems 40)'}"
    )
    levels: dict[str, list[Level]] = {name: [] for name in runs}
    ratios = []
    with server(args.url, None if args.url else args.launch) as (url, model):
        for r in range(args.rounds):
            print(f"round {r + 1}")
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for name in order:
                lv = asyncio.run(
                    run_level(url, model, args.concurrency, args.max_tokens, runs[name])
                )
                levels[name].append(lv)
                show(name, lv)
            ratios.append(levels["schema"][-1].tokens_per_s / levels["free"][-1].tokens_per_s)
    print(f"\nmedians over {args.rounds} rounds:")
    for name, lvs in levels.items():
        show(name, median_level(lvs))
    free, constrained = (median_level(levels[n]).tokens_per_s for n in runs)
    print(
        f"constrained / unconstrained tok/s: x{constrained / free:.2f} (of the medians); "
        f"per round: {', '.join(f'x{x:.2f}' for x in ratios)}, "
        f"median x{statistics.median(ratios):.2f}"
    )
    if not args.skip_constraints:
        print(
            "\n--- bench_constraints.py --walks 4 (grammar compile and mask costs) ---", flush=True
        )
        script = Path(__file__).resolve().parent / "bench_constraints.py"
        subprocess.run([sys.executable, str(script), "--walks", "4"], check=True)


if __name__ == "__main__":
    main()
