"""Top-k search with ``sdk.vectors``: plain Python against numpy, per query.

Random rows (``--rows`` x ``--dim``, like all-MiniLM-L6-v2's 384-wide embeddings), one query,
k = 5. Three cases: plain Python on a list of lists, numpy on a list of lists (converting it is
part of every call), numpy on an array converted once. Best of ``--repeat`` runs each
(the least disturbed by a shared machine).

    python benchmarks/bench_vectors.py [--rows 1000] [--dim 384] [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
from collections.abc import Callable

import numpy as np

from sdk.vectors import top_k


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    rng = random.Random(0)
    rows = [[rng.gauss(0, 1) for _ in range(args.dim)] for _ in range(args.rows)]
    query = [rng.gauss(0, 1) for _ in range(args.dim)]
    array = np.asarray(rows, dtype=np.float32)
    same = [[m.row for m in top_k(query, rows, use_numpy=flag)] for flag in (False, True)]
    assert same[0] == same[1], same  # the scores agree to float rounding, the rows exactly

    print(f"{args.rows} x {args.dim}, k=5; {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, numpy {np.__version__}")  # fmt: skip
    cases = {
        "plain Python, list of lists": lambda: top_k(query, rows, use_numpy=False),
        "numpy, list of lists": lambda: top_k(query, rows, use_numpy=True),
        "numpy, float32 array": lambda: top_k(query, array),
    }
    for name, fn in cases.items():
        print(f"{name:>28}: {best_ms(fn, args.repeat):8.2f} ms per query")


if __name__ == "__main__":
    main()
