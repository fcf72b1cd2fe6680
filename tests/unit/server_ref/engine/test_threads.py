"""``in_passing_thread``: torch work off the engine thread leaves no OpenMP team behind."""

from __future__ import annotations

import threading

import pytest
import torch
from kit.omp_threads import needs_teams, os_threads, settles_to

from server_ref.engine.threads import in_passing_thread


def test_the_work_runs_on_another_thread_and_its_result_or_error_comes_back() -> None:
    assert in_passing_thread(threading.get_ident) != threading.get_ident()
    with pytest.raises(ValueError, match="no such model"):
        in_passing_thread(lambda: (_ for _ in ()).throw(ValueError("no such model")))


@needs_teams
def test_a_parallel_region_on_a_passing_thread_leaves_no_openmp_threads_behind() -> None:
    x = torch.randn(512, 512)
    before = os_threads()
    in_passing_thread(lambda: torch.mm(x, x))  # a team: the passing thread and a worker
    assert settles_to(before)
