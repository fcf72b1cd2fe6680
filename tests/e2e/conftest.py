"""End-to-end fixtures: the real default model, loaded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from server_ref.engine.engine import EngineConfig, LLMEngine


@pytest.fixture(scope="session")
def default_engine(default_gguf: Path) -> LLMEngine:
    return LLMEngine.from_gguf(str(default_gguf), EngineConfig(device="cpu", kv_cache_mib=256))
