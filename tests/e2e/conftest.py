"""End-to-end fixtures: the real default model, loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server_ref.engine.engine import EngineConfig, LLMEngine


@pytest.fixture(scope="session")
def default_engine(default_gguf: Path) -> LLMEngine:
    # LLM_SDK_TEST_DEVICE=cuda runs the same checks on the GPU path, LLM_SDK_TEST_DTYPE picks
    # the precision (default float32: "Paris" hangs on a 0.35-logit first-token margin)
    config = EngineConfig(
        device=os.environ.get("LLM_SDK_TEST_DEVICE", "cpu"),
        dtype=os.environ.get("LLM_SDK_TEST_DTYPE", "float32"),
        kv_cache_mib=256,
    )
    return LLMEngine.from_gguf(str(default_gguf), config)
