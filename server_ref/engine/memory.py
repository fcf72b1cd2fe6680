"""Giving memory the engine freed back to the operating system.

Every step of a serving engine has its own shapes (how many sequences, how long their
chunks), so its temporaries come in ever new sizes. glibc's malloc keeps much of what they
free instead of returning it: its mmap threshold rises to the largest block freed so far, and
later large blocks come from the heap, whose free middle it only gives back on
``malloc_trim``. Measured on the tests' tiny model: 320 random batches took the process from
470 to 960 MiB; trimming every ten batches held it at about 700 MiB, the rest being live caches
(oneDNN keeps a kernel per shape, up to its cache capacity). One trim took 1-30 ms.

``Trimmer`` trims at most once per ``interval_s`` of engine time and whenever the engine goes
idle; where malloc is not glibc's it does nothing.

The kernels are the other half. oneDNN, and PyTorch's ideep layer above it, each keep a
compiled kernel per matmul shape in an LRU cache of 1024 by default, and a step's row count
sets the shape of every linear, so a server sees hundreds of shapes and its caches fill over
hours of traffic. Measured with the default model's four linear shapes at 1-512 rows: the
caches at their defaults grew the process by 326 MiB (about 0.3 MiB a kernel); capped at 32
each, by 0 MiB. In ``benchmarks/soak.py`` on the tests' tiny model (5 minutes) the server grew
13 % from minute 1 to 5 with the defaults and 3 % capped at 256, its native heap in use flat
from the second minute. ``bound_kernel_caches`` caps both at ``KERNEL_CACHE_CAPACITY``: room
for every decode shape (up to 32 sequences times five linears) and the recent prefill ones;
a kernel not cached costs about 1 ms to build again. The shapes themselves are bounded too:
``models.prepack.padded_rows`` runs steps above 32 rows on a multiple of 32, so the caches
fill within minutes of traffic instead of creeping up for hours with rarer row counts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable

TRIM_INTERVAL_S = 30.0
KERNEL_CACHE_CAPACITY = 256
# read by oneDNN and by ideep on their first matmul, so setting them any time before works
_KERNEL_CACHE_ENV = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def bound_kernel_caches(capacity: int = KERNEL_CACHE_CAPACITY) -> None:
    """Cap oneDNN's and ideep's kernel caches, unless the environment already sets them.

    Call it before the process's first CPU matmul: the caches keep the capacity they
    started with.

    >>> bound_kernel_caches()  # a server process: before the model is built
    """
    for name in _KERNEL_CACHE_ENV:
        os.environ.setdefault(name, str(capacity))


def _malloc_trim() -> Callable[[], object] | None:
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # no libc found, or not glibc (musl, macOS)
        return None
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


class Trimmer:
    """Call ``after_step()`` after every step and ``on_idle()`` when there is no work.

    >>> trimmer = Trimmer()
    >>> trimmer.on_idle()  # returns freed heap memory to the OS (glibc only)
    """

    def __init__(self, interval_s: float = TRIM_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._trim = _malloc_trim()
        self._last = time.monotonic()
        self._dirty = False  # steps ran since the last trim

    @property
    def available(self) -> bool:
        return self._trim is not None

    def after_step(self) -> None:
        self._dirty = True
        if time.monotonic() - self._last >= self.interval_s:
            self._run()

    def on_idle(self) -> None:
        if self._dirty:
            self._run()

    def _run(self) -> None:
        if self._trim is not None:
            self._trim()
        self._last = time.monotonic()
        self._dirty = False
