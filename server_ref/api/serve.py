"""The server's lifecycle: bind, load the models in the background, serve, drain, stop.

``serve`` binds the port at once and answers 503 (``readiness.DeferredApp``) while a thread
loads or pulls the chat model and then the embedding model, then hands every request to
the real app.

SIGTERM or SIGINT starts a drain (as a load balancer or Kubernetes expects of a replica):

1. the gate answers every new request, ``/health`` included, with 503 + ``Retry-After`` and
   ``Connection: close``; the requests already admitted run on;
2. once none is left, or at the drain deadline (``drain_timeout_s`` after the signal), the
   engine stops whatever still runs: a stream ends with an error event and ``[DONE]``, a
   waiting non-streaming request gets a 503; they have ``FLUSH_S`` to be written;
3. uvicorn then closes the listening socket and the connections, and ``serve`` returns, so
   the process exits 0. A second signal stops at once.

uvicorn's own handling would close the listening socket first (new requests get "connection
refused", not a 503 saying why) and re-raise the signal after shutdown (exit status 143, or
a KeyboardInterrupt), so ``EngineServer`` replaces it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from server_ref.api.app import create_app
from server_ref.api.connections import ConnectionLimits, uvicorn_options
from server_ref.api.readiness import DeferredApp
from server_ref.engine.async_engine import AsyncEngine
from server_ref.engine.build import EngineConfig, load_engine
from server_ref.engine.embedder import Embedder
from server_ref.engine.memory import bound_kernel_caches
from server_ref.loading import registry

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


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
    # Running requests may finish for this long after SIGTERM. 25 s fits, with the flush and
    # the process exit, inside Kubernetes' default grace period of 30 s before its SIGKILL.
    drain_timeout_s: float = 25.0
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    # a known embedding model (pulled on first use), a sentence-transformers folder, or None
    embedding_model: str | None = registry.DEFAULT_EMBEDDING_MODEL
    embedding_progress: registry.Progress | None = None
    # send a span per generation request over OTLP/HTTP here (needs the ``otel`` extra)
    otlp_traces_endpoint: str | None = None


def serve(options: ServeOptions) -> None:
    """Serve until interrupted; raise what loading the model raised, once the server stopped.

    >>> serve(ServeOptions("smollm2-135m-instruct", port=8000))  # doctest: +SKIP
    """
    _check_name(options.model, "chat")
    if options.embedding_model is not None:
        _check_name(options.embedding_model, "embedding")
    logging.basicConfig(level=options.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    bound_kernel_caches()  # else RSS grows for hours with every new batch shape
    server = EngineServer(options)
    if options.otlp_traces_endpoint is not None:
        from server_ref.api.otel import otlp_tracer_provider  # imports OpenTelemetry

        server.tracer_provider = otlp_tracer_provider(options.otlp_traces_endpoint)
    threading.Thread(target=server.load, name="model-loader", daemon=True).start()
    try:
        server.run()
    finally:
        if server.engine is not None:
            server.engine.shutdown()
        if server.embedder is not None:
            server.embedder.shutdown()
        if server.tracer_provider is not None:
            server.tracer_provider.shutdown()  # sends the spans still in its batch
    if server.failure is not None:
        raise server.failure


log = logging.getLogger("server_ref.serve")

FLUSH_S = 1.0  # after the drain deadline: time for the stopped requests' last bytes


def _check_name(name: str, kind: registry.ModelKind) -> None:
    """An unknown name, or a model of the other kind, is a one-line error before binding
    (a local file or folder passes; a known name is pulled later, by the loader)."""
    spec = registry.MODELS.get(name)
    if spec is None or spec.kind != kind:
        registry.resolve_model(name, kind=kind)


class EngineServer(uvicorn.Server):
    """uvicorn's server around a ``DeferredApp`` that ``load`` fills in from another thread,
    with the drain of the module docstring."""

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
                # after the drain only clients that stopped reading can be left
                timeout_graceful_shutdown=1,
                **uvicorn_options(options.limits),
            )
        )
        self.engine: AsyncEngine | None = None
        self.embedder: Embedder | None = None
        self.tracer_provider: TracerProvider | None = None  # for create_app
        self.failure: BaseException | None = None  # what load raised, for serve to re-raise
        self._drain_deadline: float | None = None  # time.monotonic() of the deadline
        self._stopped_at: float | None = None  # when the engine stopped what was left

    def load(self) -> None:
        """Build the engine and open the gate; on failure, stop the server (a thread's body)."""
        options = self.options
        try:
            engine = AsyncEngine(
                load_engine(options.model, options.engine, progress=options.progress)
            )
            engine.start()
            self.engine = engine
            if options.embedding_model is not None:
                self.gate.status = "loading the embedding model"
                self.embedder = load_embedder(options)
                self.embedder.start()
            self.gate.app = create_app(
                engine,
                api_key=options.api_key,
                served_model_name=options.served_model_name,
                enable_web=options.enable_web,
                embedder=self.embedder,
                tracer_provider=self.tracer_provider,
            )
            info = engine.model_info
            print(
                f"serving {info.id} ({info.extra.get('device')}, {info.extra.get('dtype')} "
                f"with {info.extra.get('matmul_dtype')} matmuls, "
                f"context {info.context_length}){_embedding_line(self.embedder)} "
                f"on http://{options.host}:{options.port}",
                file=sys.stderr,
                flush=True,
            )
        except BaseException as exc:  # re-raised by serve on the main thread, as one line
            self.failure = exc
            self.gate.status = "the model failed to load"
            self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: it only sets flags, which on_tick acts on.
        if self._drain_deadline is not None or self.should_exit:
            log.warning("second signal: stopping now")
            self.should_exit = self.force_exit = True
        elif self.gate.app is None:
            self.should_exit = True  # still loading: nothing to drain
        else:
            self.gate.start_draining()
            self._drain_deadline = time.monotonic() + self.options.drain_timeout_s
            log.warning(
                "draining: %d requests running, %g s to finish",
                self.gate.in_flight,
                self.options.drain_timeout_s,
            )

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        if self._drain_deadline is None:
            return False
        if self.gate.in_flight == 0:
            return True
        now = time.monotonic()
        if self._stopped_at is None and now >= self._drain_deadline:
            log.warning("drain deadline: stopping the %d requests left", self.gate.in_flight)
            if self.engine is not None:
                self.engine.abort_all()
            self._stopped_at = now
        return self._stopped_at is not None and now >= self._stopped_at + FLUSH_S

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Whatever the engine still runs (a forced stop) ends with an error event now,
        # before uvicorn closes the connections.
        if self.engine is not None:
            await asyncio.to_thread(self.engine.shutdown)
        if self.embedder is not None:
            await asyncio.to_thread(self.embedder.shutdown)
        await super().shutdown(sockets)


def load_embedder(options: ServeOptions) -> Embedder:
    """The embedding model of ``options``, built (pulled on first use), not started.

    >>> load_embedder(ServeOptions("m.gguf", embedding_model="all-minilm-l6-v2"))  # doctest: +SKIP
    """
    from server_ref.engine.build_embedder import build_embedder

    name = options.embedding_model
    assert name is not None
    folder = registry.resolve_model(name, kind="embedding", progress=options.embedding_progress)
    model_id = name if name in registry.MODELS else folder.name
    return build_embedder(folder, model_id=model_id, device=options.engine.device)


def _embedding_line(embedder: Embedder | None) -> str:
    if embedder is None:
        return ""
    info, extra = embedder.info, embedder.info.extra or {}
    return (
        f" and {info.id} ({extra.get('device')}, {extra.get('dtype')}, "
        f"{info.dimensions} dimensions, {info.max_tokens} tokens per input)"
    )
