"""``RouteReplica``, HAProxy's ingress request router, on a stand-in engine handle: no Ray
cluster is started. Skipped without the ``ray`` extra. Through a real HAProxy it is
``test_ray_serve.py`` with ``--router prefix --ingress haproxy``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

pytest.importorskip("ray.serve", reason="needs the ray extra: pip install 'llm-sdk[ray]'")

from ray.serve._private.common import DeploymentID, ReplicaID

from server_ref.deploy.affinity import INDEXES, PrefixIndex
from server_ref.deploy.ray_route import ROUTE_PATH, RouteReplica
from server_ref.deploy.ray_router import RoutingKey

ENGINES = DeploymentID(name="server_ref", app_name="server_ref")
REPLICA = ReplicaID("abc123", ENGINES)
CHAT = {"model": "m", "messages": [{"role": "system", "content": "Be brief."}]}


class Engines:
    """What ``RouteReplica`` uses of a ``DeploymentHandle``: it records what it was asked."""

    deployment_id = ENGINES

    def __init__(self) -> None:
        self.asked: list[Any] = []

    @contextlib.asynccontextmanager
    async def choose_replica(self, *args: Any) -> AsyncIterator[Any]:
        self.asked.append(args)
        yield SimpleNamespace(_replica=SimpleNamespace(replica_id=REPLICA))


@pytest.fixture
def index() -> Iterator[PrefixIndex]:
    INDEXES[ENGINES] = PrefixIndex(chunk_chars=4)
    yield INDEXES[ENGINES]
    del INDEXES[ENGINES]


async def post(engines: Engines, path: str, body: bytes) -> httpx.Response:
    app = RouteReplica(engines).__serve_build_asgi_app__()  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://route") as http:
        return await http.post(path, content=body)


async def test_a_chat_goes_where_the_router_says_and_is_remembered(index: PrefixIndex) -> None:
    engines = Engines()
    r = await post(engines, ROUTE_PATH, json.dumps(CHAT).encode())
    assert r.status_code == 200
    assert r.json() == {"replica_id": REPLICA.to_full_id_str()}  # the name HAProxy knows
    assert engines.asked == [(RoutingKey("<system>Be brief.\n"),)]
    assert index.match("<system>Be brief.\n<user>hi") == (16, {"abc123"})


@pytest.mark.parametrize("body", [b'{"input": "embed me"}', b"{not json", b""])
async def test_a_body_without_text_is_routed_by_load_and_not_remembered(
    index: PrefixIndex, body: bytes
) -> None:
    engines = Engines()
    r = await post(engines, ROUTE_PATH, body)
    assert r.status_code == 200 and engines.asked == [(RoutingKey(None),)]
    assert sum(index.sizes.values()) == 0


async def test_only_the_route_is_served() -> None:
    engines = Engines()
    assert (await post(engines, "/v1/chat/completions", b"{}")).status_code == 404
    assert engines.asked == []


async def test_before_the_router_exists_nothing_is_remembered() -> None:
    assert ENGINES not in INDEXES
    r = await post(Engines(), ROUTE_PATH, json.dumps(CHAT).encode())
    assert r.status_code == 200
