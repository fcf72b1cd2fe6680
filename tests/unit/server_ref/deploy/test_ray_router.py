"""``PrefixAffinityRouter`` as Serve drives it, on Serve's in-memory replica stand-ins: no Ray
cluster is started. Skipped without the ``ray`` extra."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.serve", reason="needs the ray extra: pip install 'llm-sdk[ray]'")

from ray.serve._private.common import DeploymentHandleSource, RequestMetadata
from ray.serve._private.test_utils import (
    FAKE_REPLICA_DEPLOYMENT_ID,
    FakeRunningReplica,
)
from ray.serve.request_router import PendingRequest

from server_ref.deploy.forwarding import ForwardedRequest
from server_ref.deploy.ray_router import PrefixAffinityRouter

SCOPE = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}


def request(text: str | None) -> PendingRequest:
    forwarded = ForwardedRequest(SCOPE, b"{}", routing_text=text)
    return PendingRequest(args=[forwarded], kwargs={}, metadata=RequestMetadata("r", "r"))


@pytest.fixture
async def router() -> PrefixAffinityRouter:
    router = PrefixAffinityRouter(
        deployment_id=FAKE_REPLICA_DEPLOYMENT_ID,
        handle_source=DeploymentHandleSource.UNKNOWN,
        use_replica_queue_len_cache=True,
    )
    router.initialize_state(max_imbalance=2, chunk_chars=8)
    router.update_replicas([FakeRunningReplica("A"), FakeRunningReplica("B")])
    return router


async def choose(router: PrefixAffinityRouter, text: str | None) -> list[list[str]]:
    ranks = await router.choose_replicas(router.curr_replicas.values(), request(text))
    return [sorted(r.replica_id.unique_id for r in rank) for rank in ranks]


def routed(router: PrefixAffinityRouter, text: str, replica: str) -> None:
    [replica_id] = [r for r in router.curr_replicas if r.unique_id == replica]
    router.on_request_routed(request(text), replica_id, result=None)


async def test_a_later_turn_goes_where_the_earlier_one_went(router: PrefixAffinityRouter) -> None:
    routed(router, "system prompt; turn one", "B")
    ranks = await choose(router, "system prompt; turn one; reply; turn two")
    assert ranks[0] == ["B"]
    assert ranks[1] == ["A", "B"]  # then Serve's power of two choices, when B is full


async def test_an_overloaded_replica_loses_its_affinity(router: PrefixAffinityRouter) -> None:
    routed(router, "system prompt; turn one", "B")
    [a, b] = sorted(router.curr_replicas, key=lambda r: r.unique_id)
    router.on_new_queue_len_info(a, 0)
    router.on_new_queue_len_info(b, 3)  # more than max_imbalance=2 above A
    ranks = await choose(router, "system prompt; turn one; reply; turn two")
    assert ranks == [["A", "B"]]  # power of two choices alone


async def test_requests_without_text_use_power_of_two(router: PrefixAffinityRouter) -> None:
    assert await choose(router, None) == [["A", "B"]]


async def test_a_replica_that_leaves_is_forgotten(router: PrefixAffinityRouter) -> None:
    routed(router, "system prompt; turn one", "B")
    router.update_replicas([FakeRunningReplica("A"), FakeRunningReplica("C")])
    assert "B" not in router.index.sizes
    assert (await choose(router, "system prompt; turn one; more"))[0] == ["A", "C"]
