"""``create_app``: the FastAPI application around an engine.

Request path, outermost first::

    RequestContextMiddleware   x-request-id, access log line, last-resort 500
    APIKeyMiddleware           401 unless the Bearer key matches (only with api_key)
    BodyLimitMiddleware        413 above max_body_bytes (Content-Length and streamed bytes),
                               408 for a body not complete within body_timeout_s
    FastAPI router             routes_*; errors.* handlers give OpenAI-shaped 4xx/5xx
    static web page            at /, when server_ref/api/static/index.html exists
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from server_ref.api import (
    routes_chat,
    routes_completions,
    routes_embeddings,
    routes_misc,
    routes_tokenizer,
)
from server_ref.api.auth import APIKeyMiddleware
from server_ref.api.errors import install_error_handlers
from server_ref.api.metrics import Metrics
from server_ref.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from server_ref.api.openapi import install_openapi
from server_ref.api.state import ServerState
from server_ref.api.tracing import RequestTracer
from server_ref.engine.types import EngineClient

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from server_ref.engine.embedder import Embedder

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# A whole body of the maximum size at 70 KB/s (a poor mobile uplink) still arrives in time.
DEFAULT_BODY_TIMEOUT_S = 60.0
STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    engine: EngineClient,
    *,
    api_key: str | None = None,
    served_model_name: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    retry_after: float = 1.0,
    enable_web: bool = True,
    web_dir: Path | None = None,
    embedder: Embedder | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """The OpenAI-compatible HTTP app serving ``engine`` (and ``embedder``, a started
    ``engine.embedder.Embedder``, at ``/v1/embeddings``).

    ``served_model_name`` defaults to the engine's model id; requests may name either.
    ``retry_after`` is the least ``Retry-After`` (seconds) sent with a 429 (and a 503 when the
    server stopped a request). ``body_timeout_s`` bounds how long a request body may take to
    arrive, counted from the start of the request. The web page is
    mounted at ``/`` when ``enable_web`` and ``web_dir`` (default: the package's ``static/``)
    holds an ``index.html``. With a ``tracer_provider`` (OpenTelemetry's) every generation
    request is a span on it (``tracing``); without one OpenTelemetry is never imported.

    >>> app = create_app(engine, api_key="sk-local")  # doctest: +SKIP
    >>> uvicorn.run(app, port=8000)  # doctest: +SKIP
    """
    name = served_model_name or engine.model_info.id
    if embedder is not None and embedder.info.id in (name, engine.model_info.id):
        raise ValueError(f"the chat and the embedding model are both named {name!r}")
    app = FastAPI(
        title="server_ref",
        description="OpenAI-compatible reference server of llm-sdk.",
        version="0.1.0",
    )
    app.state.server = ServerState(
        engine=engine,
        metrics=Metrics(engine.stats, name),
        served_model_name=name,
        retry_after=retry_after,
        embedder=embedder,
        tracer=None if tracer_provider is None else _tracer(tracer_provider),
    )
    install_error_handlers(app)
    app.include_router(routes_tokenizer.router)  # before routes_misc's /v1/models/{id:path}
    app.include_router(routes_misc.router)
    app.include_router(routes_chat.router)
    app.include_router(routes_completions.router)
    app.include_router(routes_embeddings.router)
    install_openapi(app, api_key=bool(api_key))

    static = web_dir if web_dir is not None else STATIC_DIR
    if enable_web and (static / "index.html").is_file():
        # Mounted last: it answers only paths no API route claimed.
        files = StaticFiles(directory=static, html=True)
        app.mount("/", _BehindTheAPI(app, files), name="web")

    # add_middleware wraps: the last added is the outermost.
    app.add_middleware(
        BodyLimitMiddleware, max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s
    )
    if api_key:
        app.add_middleware(APIKeyMiddleware, api_key=api_key)
    app.add_middleware(RequestContextMiddleware)
    return app


def _tracer(provider: TracerProvider) -> RequestTracer:
    from server_ref.api.otel import OpenTelemetryTracer  # imports OpenTelemetry

    return OpenTelemetryTracer(provider)


class _BehindTheAPI:
    """The web page's files, but never for a path an API route owns.

    A mount at "/" fully matches every path, and Starlette prefers a full match to a route
    that matches only the path, so ``GET /v1/chat/completions`` would be the file server's
    404 instead of the API's 405, and ``POST /v1/nothing`` its 405 instead of a 404.
    """

    def __init__(self, app: FastAPI, files: ASGIApp) -> None:
        self.app = app
        self.files = files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for route in self.app.routes:
            match, child_scope = route.matches(scope)
            if match is Match.PARTIAL:  # the path is the API's, the method is not
                await route.handle({**scope, **child_scope}, receive, send)  # its 405
                return
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(404)
        await self.files(scope, receive, send)
