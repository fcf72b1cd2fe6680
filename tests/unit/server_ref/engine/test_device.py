"""``pick_device``: the ``--device`` / ``--dtype`` policy."""

from __future__ import annotations

import pytest
import torch

from server_ref.engine import device


def test_pick_device_precisions(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    f32, bf16 = torch.float32, torch.bfloat16
    assert device.pick_device("cpu", "float32") == (cpu, f32, f32)
    assert device.pick_device("cpu", "bfloat16") == (cpu, bf16, bf16)
    assert device.pick_device("cpu", "mixed") == (cpu, f32, bf16)
    # auto: mixed only where bf16 matmuls are native (emulated bf16 would be slower than fp32)
    monkeypatch.setattr(device, "has_native_bf16", lambda: True)
    assert device.pick_device("cpu", "auto") == (cpu, f32, bf16)
    monkeypatch.setattr(device, "has_native_bf16", lambda: False)
    assert device.pick_device("cpu", "auto") == (cpu, f32, f32)
    with pytest.raises(ValueError, match="unknown dtype 'float16'; use auto, float32"):
        device.pick_device("cpu", "float16")
    monkeypatch.setattr(device.torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match="mixed is a CPU mode"):
        device.pick_device("cuda", "mixed")


def test_int4_policy() -> None:
    f32, bf16 = torch.float32, torch.bfloat16
    # mixed precision: 4-bit layers for small steps (auto), every step (always) or none
    assert device.int4_max_rows("auto", f32, bf16) == device.INT4_AUTO_MAX_ROWS
    assert device.int4_max_rows("always", f32, bf16) is None
    assert device.int4_max_rows("never", f32, bf16) == 0
    # the kernel takes bf16 inputs: other precisions keep their own matmuls under auto
    assert device.int4_max_rows("auto", f32, f32) == 0
    assert device.int4_max_rows("auto", bf16, bf16) == 0
    with pytest.raises(ValueError, match="--int4 always needs --dtype mixed"):
        device.int4_max_rows("always", f32, f32)
    with pytest.raises(ValueError, match="unknown --int4 'sometimes'; use auto, always, never"):
        device.int4_max_rows("sometimes", f32, bf16)
