"""A real uvicorn in a thread of the test process, over a real ``AsyncEngine`` on the tiny
model: for tests that reach into the engine (inject faults, spy on the scheduler) while
clients talk HTTP to it.

    with running_engine(tiny_gguf) as engine, serve_in_thread(create_app(engine)) as url:
        httpx.get(f"{url}/health")
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import uvicorn

from server_ref.engine.async_engine import AsyncEngine
from server_ref.engine.build import EngineConfig, build_engine


@contextlib.contextmanager
def serve_in_thread(app: Any, **config: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port; yield its base URL. ``config``:
    more ``uvicorn.Config`` arguments."""
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "off", **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, **options))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during startup"
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), "uvicorn did not shut down within 10 s"


@contextlib.contextmanager
def running_engine(
    gguf: Path, kv_cache_mib: int = 16, int4: str = "never", **options: Any
) -> Iterator[AsyncEngine]:
    """A started ``AsyncEngine`` on ``gguf`` (``options``: its keyword arguments)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess servers (see live_server.TINY_ENV)
    config = EngineConfig(device="cpu", kv_cache_mib=kv_cache_mib, int4=int4)
    engine = AsyncEngine(build_engine(str(gguf), config), **options)
    engine.start()
    try:
        yield engine
    finally:
        engine.shutdown()
        torch.set_num_threads(threads)
