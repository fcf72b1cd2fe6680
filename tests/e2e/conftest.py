"""End-to-end fixtures: the real default model, loaded once per session."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from server_ref.engine.build import EngineConfig, build_engine
from server_ref.engine.device import pick_device
from server_ref.engine.engine import LLMEngine


def e2e_dtype() -> str:
    """LLM_SDK_TEST_DTYPE picks the precision of the e2e engine and servers (default: the
    server's own default, ``auto``)."""
    return os.environ.get("LLM_SDK_TEST_DTYPE", "auto")


def _build_engine(gguf: Path, dtype: str, int4: str = "auto") -> LLMEngine:
    # LLM_SDK_TEST_DEVICE=cuda runs the same checks on the GPU path
    config = EngineConfig(
        device=os.environ.get("LLM_SDK_TEST_DEVICE", "cpu"),
        dtype=dtype,
        int4=int4,
        kv_cache_mib=256,
    )
    return build_engine(str(gguf), config)


@pytest.fixture(scope="session")
def default_engine(default_gguf: Path) -> LLMEngine:
    return _build_engine(default_gguf, e2e_dtype())


@pytest.fixture(scope="session")
def engine_with_dtype(
    default_gguf: Path, default_engine: LLMEngine
) -> Callable[[str, str], LLMEngine]:
    """The default model's engine at a given ``--dtype`` and ``--int4`` (the session's one
    when they match)."""

    device = os.environ.get("LLM_SDK_TEST_DEVICE", "cpu")

    def build(dtype: str, int4: str = "auto") -> LLMEngine:
        same = pick_device(device, dtype) == pick_device(device, e2e_dtype()) and int4 == "auto"
        return default_engine if same else _build_engine(default_gguf, dtype, int4)

    return build
