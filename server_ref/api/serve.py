"""The server's lifecycle: bind, load the model in the background, serve, shut down cleanly.

``serve`` binds the port at once and answers 503 (``readiness.DeferredApp``) while a thread
loads or pulls the model, then hands every request to the real app. On shutdown the engine
fails what it still runs before uvicorn closes connections, so open streams end with an error
event and ``[DONE]`` instead of being cut off when the grace period runs out.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from server_ref.api.app import create_app
from server_ref.api.connections import ConnectionLimits, uvicorn_options
from server_ref.api.readiness import DeferredApp
from server_ref.engine.async_engine import AsyncEngine
from server_ref.engine.build import EngineConfig, load_engine
from server_ref.loading import registry


@dataclass(frozen=True)
class ServeOptions:
    """What ``serve`` runs and how it is reached."""

    model: str  # a known model name (pulled on first use) or a path to a .gguf file
    engine: EngineConfig = field(default_factory=EngineConfig)
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # require this Bearer key on the API routes
    served_model_name: str | None = None  # default: the engine's model id
    enable_web: bool = True  # the chat page at /
    log_level: str = "info"
    progress: registry.Progress | None = None  # reports of a first-use download
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)


def serve(options: ServeOptions) -> None:
    """Serve until interrupted; raise what loading the model raised, once the server stopped.

    >>> serve(ServeOptions("smollm2-135m-instruct", port=8000))  # doctest: +SKIP
    """
    model = options.model
    if model not in registry.MODELS and not Path(model).is_file():
        registry.resolve_model(model)  # raises the one-line "unknown model" error before binding
    logging.basicConfig(level=options.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    server = EngineServer(options)
    threading.Thread(target=server.load, name="model-loader", daemon=True).start()
    try:
        server.run()
    finally:
        if server.engine is not None:
            server.engine.shutdown()
    if server.failure is not None:
        raise server.failure


class EngineServer(uvicorn.Server):
    """uvicorn's server around a ``DeferredApp`` that ``load`` fills in from another thread."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.gate = DeferredApp()
        super().__init__(
            uvicorn.Config(
                self.gate,
                host=options.host,
                port=options.port,
                log_level=options.log_level,
                access_log=False,  # server_ref.access logs one line per request itself
                timeout_graceful_shutdown=3,
                **uvicorn_options(options.limits),
            )
        )
        self.engine: AsyncEngine | None = None
        self.failure: BaseException | None = None  # what load raised, for serve to re-raise

    def load(self) -> None:
        """Build the engine and open the gate; on failure, stop the server (a thread's body)."""
        options = self.options
        try:
            engine = AsyncEngine(
                load_engine(options.model, options.engine, progress=options.progress)
            )
            engine.start()
            self.engine = engine
            self.gate.app = create_app(
                engine,
                api_key=options.api_key,
                served_model_name=options.served_model_name,
                enable_web=options.enable_web,
            )
            info = engine.model_info
            print(
                f"serving {info.id} ({info.extra.get('device')}, {info.extra.get('dtype')} "
                f"with {info.extra.get('matmul_dtype')} matmuls, "
                f"context {info.context_length}) on http://{options.host}:{options.port}",
                file=sys.stderr,
                flush=True,
            )
        except BaseException as exc:  # re-raised by serve on the main thread, as one line
            self.failure = exc
            self.gate.status = "the model failed to load"
            self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Fail what the engine still runs first (see the module docstring).
        if self.engine is not None:
            await asyncio.to_thread(self.engine.shutdown)
        await super().shutdown(sockets)
