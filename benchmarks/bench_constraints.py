"""Grammar-constrained decoding costs on the default model's vocabulary (issue 10).

With the server's own ``GrammarCompiler`` (llguidance), for each schema of
``tests/fixtures/json_schemas.json`` and for json_object:

* compile time, cold (first compile on a fresh compiler) and cached (the same spec again plus
  the per-request matcher copy: what a request pays once the grammar is known);
* per-token mask time for one sequence and per step for 16 sequences (one parallel fill),
  replaying token sequences from walks through the real sampler (the tests' walker);
* what applying 16 masks adds to ``sampler.sample`` for a [16, vocab] batch.

``--compare-xgrammar`` replays the very same token sequences through xgrammar (install it
with ``pip install xgrammar torch==2.13.0``) and checks which JSON-schema keywords each library
enforces, refuses at compile time, or ignores while accepting output that violates them.

    python benchmarks/bench_constraints.py [--walks 6] [--compare-xgrammar] [--json out.json]

Timings are medians and percentiles of single runs; other load on the machine shows in them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import llguidance  # noqa: E402
from kit.grammar_walk import SCHEMAS, Walker, validate  # noqa: E402

from sdk.tokens import ModelTokenizer, tokenizer_from_gguf  # noqa: E402
from server_ref.engine.constraints import ConstraintSpec, GrammarCompiler  # noqa: E402
from server_ref.engine.sampler import RowState, sample  # noqa: E402
from server_ref.engine.types import SamplingParams  # noqa: E402
from server_ref.loading.registry import pull  # noqa: E402

CASES: dict[str, dict[str, Any] | None] = {**SCHEMAS, "json_object": None}
BATCH = 16

# (schema, a reply that violates it): does a library refuse the schema, or accept the reply?
KEYWORD_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "uniqueItems": ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "[1, 1]"),
    "not": ({"properties": {"a": {"not": {"type": "string"}}}, "required": ["a"]}, '{"a": "x"}'),
    "contains": ({"type": "array", "contains": {"const": 3}}, "[1]"),
    "if/then": ({"if": {"required": ["a"]}, "then": {"required": ["b"]}}, '{"a": 1}'),
    "dependentRequired": ({"dependentRequired": {"a": ["b"]}, "type": "object"}, '{"a": 1}'),
    "propertyNames": ({"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}}, '{"A": 1}'),
    "pattern look-ahead": ({"type": "string", "pattern": "^(?=b)[a-z]+$"}, '"abc"'),
    "unknown format": ({"type": "string", "format": "password"}, '"!!"'),
    "multipleOf": ({"type": "integer", "multipleOf": 5}, "7"),
    "minProperties": ({"type": "object", "minProperties": 2}, '{"a": 1}'),
    "format email": ({"type": "string", "format": "email"}, '"not an email"'),
    "format date": ({"type": "string", "format": "date"}, '"2024-13-45"'),
}


class Library:
    """One grammar library behind the few calls the measurements need."""

    name: str
    build_s: float

    def compile(self, key: str, schema: dict[str, Any] | None) -> None: ...
    def matcher(self, key: str) -> Any: ...
    def masks(self, matchers: Sequence[Any]) -> torch.Tensor: ...
    def accept(self, matcher: Any, token: int) -> bool: ...


class Ours(Library):
    def __init__(self, tok: ModelTokenizer, eos: list[int]) -> None:
        self.name = f"llguidance {llguidance.__version__} (server_ref GrammarCompiler)"
        start = time.perf_counter()
        self.c = GrammarCompiler.from_tokenizer(tok, vocab_size=tok.n_vocab, eos_token_ids=eos)
        self.build_s = time.perf_counter() - start
        self.specs: dict[str, ConstraintSpec] = {}

    def compile(self, key: str, schema: dict[str, Any] | None) -> None:
        spec = ConstraintSpec.json_schema(schema) if schema else ConstraintSpec.json_object()
        self.specs[key] = spec
        self.c.compile(spec)

    def matcher(self, key: str) -> Any:
        return self.c.matcher(self.specs[key])

    def masks(self, matchers: Sequence[Any]) -> torch.Tensor:
        return self.c.fill_next_token_bitmask(matchers)

    def accept(self, matcher: Any, token: int) -> bool:
        return bool(matcher.accept(token))


class XGrammar(Library):
    def __init__(self, tok: ModelTokenizer, eos: list[int]) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.name = f"xgrammar {_version('xgrammar')}"
        start = time.perf_counter()
        special = set(tok.special_tokens.values())  # "" marks a special token for xgrammar
        vocab = [b"" if i in special else tok.token_bytes(i) for i in range(tok.n_vocab)]
        info = xgr.TokenizerInfo(
            vocab, xgr.VocabType.RAW, vocab_size=tok.n_vocab, stop_token_ids=eos
        )
        self.c = xgr.GrammarCompiler(info, max_threads=os.cpu_count() or 1)
        self.batch = xgr.BatchGrammarMatcher()
        self.build_s = time.perf_counter() - start
        self.vocab, self.grammars = tok.n_vocab, {}

    def compile(self, key: str, schema: dict[str, Any] | None) -> None:
        text = json.dumps(schema or {"type": "object"})
        self.grammars[key] = self.c.compile_json_schema(
            text, any_whitespace=False, separators=(", ", ": "), strict_mode=False
        )

    def matcher(self, key: str) -> Any:
        return self.xgr.GrammarMatcher(self.grammars[key])

    def masks(self, matchers: Sequence[Any]) -> torch.Tensor:
        bitmask = self.xgr.allocate_token_bitmask(len(matchers), self.vocab)
        self.batch.batch_fill_next_token_bitmask(list(matchers), bitmask)
        return bitmask

    def accept(self, matcher: Any, token: int) -> bool:
        return bool(matcher.accept_token(token))


def walks(tok: ModelTokenizer, eos: list[int], n: int) -> dict[str, list[list[int]]]:
    """``n`` token sequences per case (ending with EOS), each checked against its schema."""
    compiler = GrammarCompiler.from_tokenizer(tok, vocab_size=tok.n_vocab, eos_token_ids=eos)
    walker = Walker(compiler, [tok.token_bytes(i) for i in range(tok.n_vocab)], eos)
    out: dict[str, list[list[int]]] = {}
    for key, schema in CASES.items():
        spec = ConstraintSpec.json_schema(schema) if schema else ConstraintSpec.json_object()
        out[key] = []
        for seed in range(n):
            ids = walker.walk(
                compiler.matcher(spec), seed=seed, free_steps=[0, 10, 30, 80][seed % 4]
            )
            validate(schema, tok.decode_bytes(ids).decode("utf-8"))
            out[key].append([*ids, eos[0]])
    return out


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def allowed(bitmask: torch.Tensor, row: int, token: int) -> bool:
    return bool((int(bitmask[row, token // 32]) >> (token % 32)) & 1)


def measure(lib: Library, seqs: dict[str, list[list[int]]]) -> dict[str, Any]:
    compile_ms = {}
    for key, schema in CASES.items():
        cold = timed(lambda: lib.compile(key, schema))  # noqa: B023
        cached = timed(lambda: (lib.compile(key, schema), lib.matcher(key)))  # noqa: B023
        compile_ms[key] = (1e3 * cold, 1e3 * cached)
    one: list[float] = []
    rejected: list[str] = []
    for key, runs in seqs.items():
        for tokens in runs:
            m = lib.matcher(key)
            for token in tokens:
                one.append(timed(lambda: lib.masks([m])))  # noqa: B023
                if not lib.accept(m, token):
                    rejected.append(key)
                    break
    flat = [(key, t) for key, runs in seqs.items() for t in runs]
    batch: list[tuple[float, int]] = []
    for start in range(0, len(flat) - BATCH + 1, BATCH):
        group = flat[start : start + BATCH]
        live = [(lib.matcher(key), tokens) for key, tokens in group]
        for step in range(max(len(t) for _, t in live)):
            live = [(m, t) for m, t in live if step < len(t)]
            batch.append((timed(lambda: lib.masks([m for m, _ in live])), len(live)))  # noqa: B023
            for m, t in live:
                lib.accept(m, t[step])
    return {"compile_ms": compile_ms, "one": one, "batch": batch, "rejected": rejected}


def sampler_cost(lib: Ours, seqs: dict[str, list[list[int]]], vocab: int) -> tuple[float, float]:
    """Median ms of ``sample`` on [16, vocab] greedy logits without and with 16 real masks."""
    keys = [k for k in seqs for _ in range(2)][:BATCH]
    matchers = [lib.matcher(k) for k in keys]
    for m, k in zip(matchers, keys, strict=True):  # move into the values: masks of real states
        for token in seqs[k][0][:5]:
            m.accept(token)
    masks = lib.masks(matchers)
    params = SamplingParams(max_tokens=1, temperature=0.0)
    logits = torch.randn(BATCH, vocab)
    plain = [RowState(params, [], None) for _ in range(BATCH)]
    masked = [RowState(params, [], None, masks[i]) for i in range(BATCH)]
    times: dict[str, list[float]] = {"plain": [], "masked": []}
    for _ in range(30):
        for name, rows in (("plain", plain), ("masked", masked)):
            times[name].append(timed(lambda: sample(logits.clone(), rows)))  # noqa: B023
    return 1e3 * statistics.median(times["plain"]), 1e3 * statistics.median(times["masked"])


def keyword_support(libs: list[Library], tok: ModelTokenizer, eos: int) -> list[str]:
    lines = [
        "",
        "JSON-schema keywords: refused at compile time / enforced / IGNORED (violation accepted)",
    ]
    lines.append(f"  {'keyword':20s}" + "".join(f"{lib.name.split()[0]:>14s}" for lib in libs))
    for kw, (schema, bad) in KEYWORD_CASES.items():
        row = f"  {kw:20s}"
        for lib in libs:
            try:
                lib.compile(kw, schema)
            except Exception:
                row += f"{'refused':>14s}"
                continue
            m = lib.matcher(kw)
            ok = all(lib.accept(m, t) for t in tok.encode(bad)) and lib.accept(m, eos)
            row += f"{'IGNORED' if ok else 'enforced':>14s}"
        lines.append(row)
    return lines


def report(lib: Library, r: dict[str, Any]) -> list[str]:
    one = sorted(1e6 * t for t in r["one"])
    pct = lambda p: one[min(len(one) - 1, int(p * len(one)))]  # noqa: E731
    full = [t for t, n in r["batch"] if n >= BATCH * 3 // 4]
    per_seq = sum(t for t, _ in r["batch"]) / max(1, sum(n for _, n in r["batch"]))
    lines = ["", f"== {lib.name}: tokenizer description built in {1e3 * lib.build_s:.0f} ms"]
    lines.append(f"  {'schema':16s}{'compile cold':>14s}{'cached':>12s}")
    for key, (cold, cached) in r["compile_ms"].items():
        lines.append(f"  {key:16s}{cold:11.2f} ms{cached:9.3f} ms")
    lines.append(
        f"  mask, 1 sequence: median {pct(0.5):.0f} us, p90 {pct(0.9):.0f} us, "
        f"p99 {pct(0.99):.0f} us, max {one[-1]:.0f} us ({len(one)} tokens)"
    )
    lines.append(
        f"  mask, {BATCH} sequences per step (one parallel fill): median "
        f"{1e3 * statistics.median(full):.2f} ms over {len(full)} steps with >= {BATCH * 3 // 4} "
        f"live; {1e6 * per_seq:.0f} us per sequence-step overall"
    )
    if r["rejected"]:
        lines.append(
            f"  it rejected {len(r['rejected'])} of the replayed (schema-valid) sequences: "
            + ", ".join(sorted(set(r["rejected"])))
        )
    return lines


def machine() -> str:
    info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    model = fields.get("Model name", platform.processor()).strip()
    have = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx512_bf16", "avx512_vnni"))
    return (
        f"{model}, {os.cpu_count()} CPUs ({have}); Python {platform.python_version()}, "
        f"torch {torch.__version__}, llguidance {llguidance.__version__}"
    )


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="model name or .gguf path")
    ap.add_argument("--walks", type=int, default=6, help="token sequences per schema")
    ap.add_argument("--compare-xgrammar", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    args = ap.parse_args()

    path = Path(args.model) if args.model.endswith(".gguf") else pull(args.model)
    tok = tokenizer_from_gguf(path)
    eos = [
        tok.special_tokens[t] for t in ("<|im_end|>", "<|endoftext|>") if t in tok.special_tokens
    ]
    print(f"machine: {machine()} (possibly shared with other jobs)")
    print(f"vocabulary: {path.name}, {tok.n_vocab} tokens, EOG ids {eos}")
    seqs = walks(tok, eos, args.walks)
    n_tokens = sum(len(t) for runs in seqs.values() for t in runs)
    print(f"replaying {sum(map(len, seqs.values()))} walks ({n_tokens} tokens)")
    ours = Ours(tok, eos)
    libs: list[Library] = [ours]
    if args.compare_xgrammar:
        libs.append(XGrammar(tok, eos))
    results = {}
    for lib in libs:
        results[lib.name] = measure(lib, seqs)
        print("\n".join(report(lib, results[lib.name])))
    plain, masked = sampler_cost(ours, seqs, tok.n_vocab)
    print(f"\nsampler, {BATCH} greedy rows x {tok.n_vocab} logits: {plain:.2f} ms without masks,")
    print(f"  {masked:.2f} ms with {BATCH} masks (unpack + masked_fill)")
    if args.compare_xgrammar:
        print("\n".join(keyword_support(libs, tok, eos[0])))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
