"""End-to-end fixtures: the real default model, loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server_ref.engine.engine import EngineConfig, LLMEngine


@pytest.fixture(scope="session")
def default_engine(default_gguf: Path) -> LLMEngine:
    # LLM_SDK_TEST_DEVICE=cuda runs the same checks on the GPU path (bf16)
    device = os.environ.get("LLM_SDK_TEST_DEVICE", "cpu")
    return LLMEngine.from_gguf(str(default_gguf), EngineConfig(device=device, kv_cache_mib=256))
