"""Integration fixtures: real ``server_ref serve`` processes over the tiny random-weight model.

``tiny_server`` is one server shared by the whole session (most tests only need a server
that is idle when they start, which each test leaves behind). Tests that need special flags
open their own with ``tiny_server_factory(*flags)`` in a module-scoped fixture and pay one
process start (a few seconds).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from kit.live_clients import MODES, OpenAICalls
from kit.live_server import TINY_ENV, LiveServer, ServerFactory, live_server

# 16 MiB of KV cache is 512 blocks of 16 tokens for the tiny model: room for every test here,
# and small enough that a leaked block shows in the usage gauge.
TINY_ARGS = ("--device", "cpu", "--kv-cache-mib", "16")


@pytest.fixture(scope="session")
def tiny_server_factory(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> ServerFactory:
    """``with tiny_server_factory(*flags) as server:`` a healthy server on the tiny model."""
    log_dir = tmp_path_factory.mktemp("server-logs")

    def factory(*flags: str) -> AbstractContextManager[LiveServer]:
        args = ["--model", str(tiny_gguf), *TINY_ARGS, *flags]
        return live_server(args, log_dir=log_dir, env=TINY_ENV)

    return factory


@pytest.fixture(scope="session")
def tiny_server(tiny_server_factory: ServerFactory) -> Iterator[LiveServer]:
    with tiny_server_factory() as server:
        yield server


@pytest.fixture
def base_url(tiny_server: LiveServer) -> str:
    assert tiny_server.process.poll() is None, f"the server died:\n{tiny_server.log()}"
    return tiny_server.base_url


@pytest.fixture(scope="session")
def model_id(tiny_server: LiveServer) -> str:
    """The id the server reports in ``/v1/models`` (the tiny GGUF's file stem)."""
    data = httpx.get(f"{tiny_server.base_url}/v1/models").json()["data"]
    assert len(data) == 1, data
    return str(data[0]["id"])


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Which ``openai`` client a test uses: "sync" or "async"."""
    return str(request.param)


@pytest.fixture
async def api(mode: str, base_url: str) -> AsyncIterator[OpenAICalls]:
    calls = OpenAICalls(mode, base_url)
    yield calls
    await calls.close()


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as client:
        yield client
