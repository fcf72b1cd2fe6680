"""Keeping the engine's OpenMP threads spinning: torch work off the engine thread runs on
threads that end.

PyTorch's CPU kernels run on OpenMP (libgomp). Every thread that enters a parallel region
becomes the master of a team of worker threads, and the team lives as long as that thread.
While a process holds more OpenMP threads than cores, libgomp "throttles": between regions
its workers spin ~100 times instead of ~300,000 and then sleep on a futex. A decode step is
hundreds of small ops, each a parallel region, so a sleeping worker is woken for every one.

So any thread that runs torch besides the engine's own must end when its work does: the
model loader (``api.serve`` and the Ray replicas) and the embedder's passes (``embedder``).
Measured with ``benchmarks/bench_ray.py`` (default model, 2 cores): a Ray replica that loaded
its engine on its constructor's long-lived thread ran a single stream at 0.58x of the plain
server, and at 0.97x once it loaded on a passing thread. The tests count the process's threads
to show no team is left (``tests/unit/server_ref/engine/test_threads.py``).

>>> in_passing_thread(lambda: 6 * 7)
42
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["in_passing_thread"]

T = TypeVar("T")


def in_passing_thread(work: Callable[[], T]) -> T:
    """``work()`` run on a new thread that ends with it (and with it, any OpenMP team it
    started); its result is returned and its exception raised here."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="passing") as pool:
        return pool.submit(work).result()
