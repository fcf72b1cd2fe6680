"""Counting a process's threads, to see OpenMP teams come and go (``engine.threads``)."""

from __future__ import annotations

import os
import time

import pytest

# a new thread's OpenMP default is one thread per core: with one core, no team to count
needs_teams = pytest.mark.skipif(
    not os.path.isdir("/proc/self/task") or (os.cpu_count() or 1) < 2,
    reason="counts the threads of OpenMP teams in /proc",
)


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def settles_to(count: int, within: float = 10.0) -> bool:
    """Whether the process gets back to ``count`` threads (a team's workers exit shortly
    after their master thread, not with it)."""
    deadline = time.monotonic() + within
    while os_threads() > count and time.monotonic() < deadline:
        time.sleep(0.05)
    return os_threads() <= count
