"""``--router prefix --ingress haproxy``: HAProxy asks this deployment where each request goes.

Behind HAProxy the engine replicas serve HTTP themselves, and HAProxy can ask an *ingress
request router* for the replica of each POST (Ray 2.60, the hook Ray Serve LLM's direct
streaming uses): its Lua action sends the request body to ``POST /internal/route`` on a
``RouteReplica`` and forwards the request, unchanged, to the replica named in the answer
(``{"replica_id": ...}``). The response streams from that engine replica through HAProxy
alone, so prefix affinity costs one small call per request instead of a front process that
every request and every chunk crosses (``forwarding``, the way under Serve's own proxy).

The choice itself is the engine deployment's request router, ``PrefixAffinityRouter``, run by
``DeploymentHandle.choose_replica`` on this replica's handle to the engines: Serve reserves a
slot on the chosen replica (which brings back its queue length) and releases it as the choice
is made, since HAProxy sends the request itself; then the router's index
(``affinity.INDEXES``) is told which text went where (Serve calls the router's
``on_request_routed`` only for requests it sends itself).
"""

from __future__ import annotations

from typing import Any

from ray.serve.handle import DeploymentHandle
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from server_ref.deploy.affinity import INDEXES, body_routing_text
from server_ref.deploy.ray_loopback import keep_replica_on_loopback
from server_ref.deploy.ray_router import RoutingKey

__all__ = ["ROUTE_PATH", "RouteReplica"]

ROUTE_PATH = "/internal/route"  # what Serve's HAProxy Lua action calls


class RouteReplica:
    """Answers HAProxy's ``POST /internal/route`` with the engine replica of a request."""

    def __init__(self, engines: DeploymentHandle[Any]) -> None:
        keep_replica_on_loopback()
        self.engines = engines
        self.http_app = Starlette(routes=[Route(ROUTE_PATH, self.route, methods=["POST"])])

    def __serve_build_asgi_app__(self) -> ASGIApp:
        return self.http_app

    async def route(self, request: Request) -> JSONResponse:
        text = body_routing_text(await request.body())
        async with self.engines.choose_replica(RoutingKey(text)) as selection:
            replica_id = selection._replica.replica_id
        index = INDEXES.get(self.engines.deployment_id)  # the router Serve made for the handle
        if text is not None and index is not None:
            index.insert(text, replica_id.unique_id)
        return JSONResponse({"replica_id": replica_id.to_full_id_str()})
