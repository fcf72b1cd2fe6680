"""The reference server as a Ray Serve application: one engine per replica.

Each replica builds its engine (and embedding model) in its constructor and serves the very
app of ``api.app.create_app`` through ``serve.ingress``, so routes, errors, SSE bytes and
``/metrics`` are those of one plain server; Serve's HTTP proxy spreads requests over the
replicas and restarts one that dies. Two ways in:

- ``python -m server_ref serve --ray --replicas N`` (``ray_run``);
- ``serve run deploy/serve_config.yaml`` (or ``serve deploy``, or KubeRay's RayService), whose
  ``import_path`` is ``server_ref.deploy.ray_app:build_app`` and whose ``args`` are ``AppArgs``.

With ``router="prefix"`` the application's ingress is a front deployment (``FrontReplica``)
that reads each request and forwards it to the engine replica ``ray_router`` picks, where
``EngineReplica.forward`` runs the same app on it (``forwarding`` says why and how); behind
HAProxy the engines stay the ingress and HAProxy asks ``ray_route`` for each replica.

``record_routing_stats`` reports the engine's load (running, waiting, KV blocks, prefix cache)
to Serve's request router every few seconds; tests and benchmarks read it per replica.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Application, Deployment
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server_ref.api.app import DEFAULT_BODY_TIMEOUT_S, DEFAULT_MAX_BODY_BYTES, create_app
from server_ref.api.middleware import REQUEST_ID_HEADER
from server_ref.api.serve import ServeOptions, load_embedder
from server_ref.deploy.forwarding import Forward, ForwardedRequest, Front, run_forwarded
from server_ref.deploy.ray_loopback import keep_replica_on_loopback
from server_ref.deploy.ray_route import RouteReplica
from server_ref.deploy.replicas import ReplicaPlan, plan_replicas
from server_ref.engine.async_engine import AsyncEngine
from server_ref.engine.build import EngineConfig, load_engine
from server_ref.engine.embedder import Embedder
from server_ref.engine.memory import bound_kernel_caches
from server_ref.engine.threads import in_passing_thread
from server_ref.loading import registry

__all__ = [
    "DEPLOYMENT_OF",
    "FORWARDED_OF",
    "FRONT_OF",
    "ROUTE_OF",
    "AppArgs",
    "EngineReplica",
    "FrontReplica",
    "application",
    "build_app",
]

DEPLOYMENT = "server_ref"
FRONT = "front"
ROUTE = "route"
log = logging.getLogger("server_ref.deploy")


class EngineReplica:
    """One engine (and embedding model) behind the server's FastAPI app."""

    def __init__(self, options: ServeOptions, threads: int) -> None:
        keep_replica_on_loopback()
        # OMP_NUM_THREADS comes with the replica's runtime_env; torch's pool is set here too,
        # for a replica started without it (``serve run`` with a hand-written config).
        torch.set_num_threads(threads)
        bound_kernel_caches()  # as a plain server does: before the replica's first matmul
        self.options = options
        # on a thread that ends, so that its OpenMP team does not slow the engine's (threads)
        self.engine, self.embedder = in_passing_thread(lambda: _load(options))
        self.engine.start()
        if self.embedder is not None:
            self.embedder.start()
        # not ``self.app``: serve.ingress's wrapper has a read-only property of that name
        self.http_app = _ProxyWritesRequestId(
            create_app(
                self.engine,
                api_key=options.api_key,
                served_model_name=options.served_model_name,
                enable_web=options.enable_web,
                embedder=self.embedder,
            )
        )

    def __serve_build_asgi_app__(self) -> ASGIApp:
        return self.http_app

    async def forward(self, request: ForwardedRequest) -> AsyncIterator[list[Message]]:
        """The app's answer to a request the front forwarded (``router="prefix"``)."""
        async for batch in run_forwarded(self.http_app, request):
            yield batch

    def check_health(self) -> None:
        """Serve restarts a replica whose engine thread died."""
        if not self.engine.is_ready():
            raise RuntimeError(f"the engine stopped: {self.engine.dead_reason}")

    def record_routing_stats(self) -> dict[str, Any]:
        stats = self.engine.stats()
        return {
            "running": stats.running,
            "waiting": stats.waiting,
            "kv_blocks_used": stats.kv_blocks_used,
            "kv_blocks_total": stats.kv_blocks_total,
            "prefix_cache_queries": stats.prefix_cache_queries,
            "prefix_cache_hits": stats.prefix_cache_hits,
        }

    def __del__(self) -> None:
        self.engine.shutdown()
        if self.embedder is not None:
            self.embedder.shutdown()


def _load(options: ServeOptions) -> tuple[AsyncEngine, Embedder | None]:
    engine = AsyncEngine(load_engine(options.model, options.engine))
    embedder = None if options.embedding_model is None else load_embedder(options)
    return engine, embedder


class _ProxyWritesRequestId:
    """Drops the app's ``x-request-id`` response header: Serve's proxy sends the request id
    to the replica in that header (the app echoes it) and then adds it to the response itself,
    so the client would get it twice."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_once(message: Message) -> None:
            if message["type"] == "http.response.start":
                del MutableHeaders(scope=message)[REQUEST_ID_HEADER]
            await send(message)

        await self.app(scope, receive, send_once)


# Serve wraps the class: ``serve.ingress()`` builds the app after the constructor (from
# ``__serve_build_asgi_app__``), Serve checks health every 5 s (a dead engine thread).
DEPLOYMENT_OF: Deployment = serve.deployment(name=DEPLOYMENT, health_check_period_s=5.0)(
    serve.ingress()(EngineReplica)
)
# Behind the front (an application has one ingress): reached through ``forward`` only.
FORWARDED_OF: Deployment = serve.deployment(name=DEPLOYMENT, health_check_period_s=5.0)(
    EngineReplica
)


class FrontReplica:
    """The ingress of ``router="prefix"``: reads each request, forwards it to the engines."""

    def __init__(self, engines: DeploymentHandle[Any]) -> None:
        keep_replica_on_loopback()
        self.engines = engines.options(stream=True, method_name="forward")

    def __serve_build_asgi_app__(self) -> ASGIApp:
        # the app's own limits (create_app's defaults, which serve --ray keeps)
        return Front(
            self._forward,
            max_body_bytes=DEFAULT_MAX_BODY_BYTES,
            body_timeout_s=DEFAULT_BODY_TIMEOUT_S,
        )

    def _forward(self, request: ForwardedRequest) -> Forward:
        call = self.engines.remote(request)
        assert isinstance(call, DeploymentResponseGenerator)  # stream=True
        forward: Forward = call  # typed also where Ray is not installed (mypy sees Any)
        return forward


FRONT_OF: Deployment = serve.deployment(name=FRONT)(serve.ingress()(FrontReplica))
# Behind HAProxy: the engines are the ingress, and HAProxy asks this one where each POST goes.
ROUTE_OF: Deployment = serve.deployment(name=ROUTE)(serve.ingress()(RouteReplica))


def application(options: ServeOptions, plan: ReplicaPlan, ingress: str = "proxy") -> Application:
    """The Serve application of ``options`` with ``plan``'s replicas (and its router) behind
    ``ingress`` (``haproxy.INGRESSES``).

    >>> serve.run(application(ServeOptions("m.gguf"), plan_replicas(2)))  # doctest: +SKIP
    """
    engine_options = plan.deployment_options()
    if plan.router == "default":
        return DEPLOYMENT_OF.options(**engine_options).bind(options, plan.cpus_per_replica)
    if ingress == "haproxy":
        engines = DEPLOYMENT_OF.options(**engine_options).bind(options, plan.cpus_per_replica)
        route = ROUTE_OF.options(**plan.front_options()).bind(engines)
        attached: Application = engines._with_ingress_request_router(route)
        return attached
    engines = FORWARDED_OF.options(**engine_options).bind(options, plan.cpus_per_replica)
    return FRONT_OF.options(**plan.front_options()).bind(engines)


class AppArgs(BaseModel):
    """The ``args`` of an application in a Serve config file (unknown keys are an error).

    ``replicas``/``max_replicas`` here are the defaults; a ``deployments:`` entry named
    ``server_ref`` in the config file overrides any Serve setting.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = registry.DEFAULT_MODEL
    embedding_model: str | None = registry.DEFAULT_EMBEDDING_MODEL
    device: str = "auto"
    dtype: str = "auto"
    int4: Literal["auto", "always", "never"] = "never"  # see `serve --int4`
    max_num_seqs: int = 32
    max_queue: int = 256
    kv_cache_mib: int | None = None
    max_model_len: int | None = None
    api_key: str | None = None
    served_model_name: str | None = None
    enable_web: bool = True
    replicas: int = 1
    max_replicas: int | None = None
    cpus_per_replica: int | None = None
    gpus_per_replica: float = 0.0
    router: str = "default"  # replicas.ROUTERS, checked by plan_replicas; see serve --router


def build_app(config: dict[str, Any]) -> Application:
    """The application builder of ``serve run server_ref.deploy.ray_app:build_app``: the
    config file's ``args``, checked as ``AppArgs``.

    >>> build_app({"model": "smollm2-135m-instruct", "replicas": 2})  # doctest: +SKIP
    """
    args = AppArgs.model_validate(config)
    engine = EngineConfig(
        device=args.device,
        dtype=args.dtype,
        int4=args.int4,
        max_num_seqs=args.max_num_seqs,
        max_queue=args.max_queue,
        kv_cache_mib=args.kv_cache_mib,
        max_model_len=args.max_model_len,
    )
    options = ServeOptions(
        args.model,
        engine,
        api_key=args.api_key,
        served_model_name=args.served_model_name,
        enable_web=args.enable_web,
        embedding_model=args.embedding_model,
    )
    plan = plan_replicas(
        args.replicas,
        max_replicas=args.max_replicas,
        cpus_per_replica=args.cpus_per_replica,
        gpus_per_replica=args.gpus_per_replica,
        max_num_seqs=args.max_num_seqs,
        max_queue=args.max_queue,
        one_machine=False,
        router=args.router,
    )
    # the ingress is the cluster's: Serve's processes read it from their environment
    ingress = "haproxy" if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" else "proxy"
    return application(options, plan, ingress)
