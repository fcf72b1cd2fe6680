"""``Trimmer``: when freed memory is given back (the trim itself is glibc's); the capped kernel
caches."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from server_ref.engine.memory import KERNEL_CACHE_CAPACITY, Trimmer, bound_kernel_caches


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


def test_kernel_caches_are_capped_unless_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "7")
    bound_kernel_caches()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(KERNEL_CACHE_CAPACITY)
    assert os.environ["LRU_CACHE_CAPACITY"] == "7"  # the operator's choice stands


# Runs 3 linears at 60 new row counts after capping at CAP; prints MiB grown. RAW: the
# oneDNN op itself (180 new shapes); else through PackedLinear, which pads them to 2 row counts.
_MANY_SHAPES = """
import ctypes, torch
from server_ref.engine.memory import bound_kernel_caches
from server_ref.models.prepack import PackedLinear
def rss():
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS"))
bound_kernel_caches(CAP)
torch.set_num_threads(1)
layers = [PackedLinear(torch.randn(o, i)) for o, i in [(960, 576), (576, 576), (3072, 576)]]
def run(layer, x):
    if RAW:
        return torch.ops.mkldnn._linear_pointwise(x, layer.packed, None, "none", [], "")
    return layer(x)
x = torch.randn(400, 576)
with torch.inference_mode():
    for rows in range(2, 40):
        [run(layer, x[:rows]) for layer in layers]
    before = rss()
    for rows in range(40, 100):
        [run(layer, x[:rows]) for layer in layers]
print((rss() - before) // 1024)
"""


def _grown_mib(cap: int, raw: bool) -> int:
    env = {k: v for k, v in os.environ.items() if not k.endswith("CACHE_CAPACITY")}
    code = _MANY_SHAPES.replace("CAP", str(cap)).replace("RAW", str(raw))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


_needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and glibc")
_needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN")  # type: ignore[no-untyped-call]


@_needs_linux
@_needs_onednn
def test_capped_kernel_caches_stop_growing_with_new_shapes() -> None:
    # the defaults (1024 kernels each) keep all 180 new kernels: about 0.3 MiB each
    assert _grown_mib(1024, raw=True) > 40
    assert _grown_mib(16, raw=True) < 15


@_needs_linux
@_needs_onednn
def test_padded_row_counts_keep_the_kernels_few_even_uncapped() -> None:
    # 60 row counts from 40 to 99 run as 64, 96 and 128 rows: 9 kernels, not 180
    assert _grown_mib(1024, raw=False) < 15
