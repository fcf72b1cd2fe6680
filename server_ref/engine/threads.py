"""Keeping the engine's OpenMP threads spinning: torch work off the engine thread runs on
threads that end.

PyTorch's CPU kernels run on OpenMP (libgomp). Every thread that enters a parallel region
becomes the master of a team of worker threads, and the team lives as long as that thread.
While a process holds more OpenMP threads than cores, libgomp "throttles": between regions
its workers spin ~100 times instead of ~300,000 and then sleep on a futex. A decode step is
hundreds of small ops, each a parallel region, so a sleeping worker is woken for every one.

So any thread that runs torch besides the engine's own must end when its work does: the
model loader (``api.serve`` and the Ray replicas) and the embedder's passes (``embedder``).
Measured on the default model, 2 cores (``benchmarks``' VM): after one ``/v1/embeddings``
call whose pass ran on the embedder's long-lived thread, the chat engine's OpenMP worker went
from ~2 to ~5,000 voluntary context switches a second and a single stream from 26.9 to
22.0 tok/s; a Ray replica that loaded its engine on its constructor's thread ran a single
stream at 0.58x of the plain server.

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
