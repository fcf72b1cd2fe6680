"""A replica loads its model on a thread that ends, so no idle OpenMP team outlives it (with
more OpenMP threads than cores, libgomp sleeps between parallel regions instead of spinning,
and a decode step's hundreds of small ops each pay for a wakeup). Skipped without the ``ray``
extra."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

pytest.importorskip("ray.serve", reason="needs the ray extra: pip install 'llm-sdk[ray]'")

from server_ref.deploy.ray_app import _in_passing_thread


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_the_build_runs_on_another_thread_and_its_result_or_error_comes_back() -> None:
    here = threading.get_ident()
    assert _in_passing_thread(threading.get_ident) != here
    with pytest.raises(ValueError, match="no such model"):
        _in_passing_thread(lambda: (_ for _ in ()).throw(ValueError("no such model")))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_a_parallel_region_on_the_loader_leaves_no_openmp_threads_behind() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a team has a worker thread even on a one-core machine
    try:
        x = torch.randn(512, 512)
        before = os_threads()
        _in_passing_thread(lambda: torch.mm(x, x))  # the loader's team: itself and a worker
        deadline = time.monotonic() + 10
        while os_threads() > before and time.monotonic() < deadline:
            time.sleep(0.05)  # the team's worker exits after its master thread
        assert os_threads() <= before
    finally:
        torch.set_num_threads(threads)
