"""End-to-end fixtures: the real default model, loaded once per session."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from kit.four_clients import FourClients
from kit.live_server import LiveServer, live_server

from server_ref.engine.build import EngineConfig, build_engine
from server_ref.engine.device import pick_device
from server_ref.engine.engine import LLMEngine


def e2e_dtype() -> str:
    """LLM_SDK_TEST_DTYPE picks the precision of the e2e engine and servers (default: the
    server's own default, ``auto``)."""
    return os.environ.get("LLM_SDK_TEST_DTYPE", "auto")


def _build_engine(gguf: Path, dtype: str, int4: str = "never") -> LLMEngine:
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

    def build(dtype: str, int4: str = "never") -> LLMEngine:
        same = pick_device(device, dtype) == pick_device(device, e2e_dtype()) and int4 == "never"
        return default_engine if same else _build_engine(default_gguf, dtype, int4)

    return build


@pytest.fixture(scope="session")
def default_server(
    default_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A ``server_ref serve`` process on the default model, shared by the modules that only
    send it requests (tools and structured outputs)."""
    device = os.environ.get("LLM_SDK_TEST_DEVICE", "cpu")
    args = ["--model", str(default_gguf), "--device", device, "--kv-cache-mib", "256", "--no-web"]
    env = {"OMP_NUM_THREADS": "1"}  # see test_server_e2e.py: one thread on a shared machine
    with live_server(args, log_dir=tmp_path_factory.mktemp("default-server"), env=env) as live:
        yield live


@pytest.fixture(scope="session")
def default_model_id(default_server: LiveServer) -> str:
    return str(httpx.get(f"{default_server.base_url}/v1/models").json()["data"][0]["id"])


@pytest.fixture
async def clients(default_server: LiveServer) -> AsyncIterator[FourClients]:
    """openai and this SDK, sync and async, on ``default_server``."""
    four = FourClients(default_server.base_url)
    yield four
    await four.close()
