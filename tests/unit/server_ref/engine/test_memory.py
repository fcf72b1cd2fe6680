"""``Trimmer``: when freed memory is given back (the trim itself is glibc's)."""

from __future__ import annotations

import sys

import pytest

from server_ref.engine.memory import Trimmer


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    made: list[float] = []
    monkeypatch.setattr("server_ref.engine.memory._malloc_trim", lambda: lambda: made.append(1))
    return made


def test_steps_trim_at_most_once_per_interval(calls: list[float]) -> None:
    trimmer = Trimmer(interval_s=3600)
    for _ in range(100):
        trimmer.after_step()
    assert calls == []
    trimmer.interval_s = 0
    trimmer.after_step()
    assert len(calls) == 1


def test_going_idle_trims_once_after_work(calls: list[float]) -> None:
    trimmer = Trimmer(interval_s=3600)
    trimmer.on_idle()
    assert calls == []  # nothing ran since the start
    trimmer.after_step()
    trimmer.on_idle()
    trimmer.on_idle()
    assert len(calls) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_glibc_trim_is_found_and_runs() -> None:
    trimmer = Trimmer(interval_s=0)
    assert trimmer.available
    trimmer.after_step()  # does not raise
