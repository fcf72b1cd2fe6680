"""``PrefixAffinityRouter``: prefix affinity (``affinity``) on Ray Serve's request-router API.

Serve runs one router per deployment handle: in the front process for its handle to the
engines (``RequestRouterConfig(request_router_class=...)`` on the engine deployment, set by
``ReplicaPlan.deployment_options``), or behind HAProxy in the ``ray_route`` replica. For each
request it reads the ``routing_text`` of the ``ForwardedRequest`` (or ``RoutingKey``) in the
call's arguments, ranks the replicas with
``affinity.preferred_replicas`` (queue lengths from Serve's own cache, kept current as
requests are sent and finish), and adds Serve's power of two choices as the next rank: Serve
tries the first rank, lowest queue first, and falls through to the next when every replica
in it is full. Requests without text (``/v1/models``, ``/metrics``) get power of two alone.

The mixins are those of Ray's ``PrefixCacheAffinityRouter``: no ``FIFOMixin``, whose routing
tasks may hand a replica chosen for one request's prefix to another request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

# Serve's default router (the DEFAULT_REQUEST_ROUTER_PATH of Serve's config), the fallback
from ray.serve._private.request_router.pow_2_router import PowerOfTwoChoicesRequestRouter
from ray.serve.request_router import (
    LocalityMixin,
    MultiplexMixin,
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)

from server_ref.deploy import affinity
from server_ref.deploy.affinity import MAX_IMBALANCE, PrefixIndex, preferred_replicas

__all__ = ["PrefixAffinityRouter", "RoutingKey"]


@dataclass(frozen=True)
class RoutingKey:
    """What ``ray_route`` passes to ``choose_replica``: the text alone (no request to send)."""

    routing_text: str | None


class PrefixAffinityRouter(LocalityMixin, MultiplexMixin, RequestRouter):  # type: ignore[misc]
    """Conversations to the replica that holds their prefix, unless it is overloaded."""

    def initialize_state(self, max_imbalance: int = MAX_IMBALANCE, **kwargs: Any) -> None:
        """``request_router_kwargs``: ``max_imbalance`` (requests), ``PrefixIndex``'s."""
        self.max_imbalance = max_imbalance
        self.index = PrefixIndex(**kwargs)
        # through the module: Serve pickles this one by value, so its globals are copies
        affinity.INDEXES[self._deployment_id] = self.index

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        # Ray's PrefixCacheAffinityRouter calls it so too: it needs only what the mixins give
        power_of_two = PowerOfTwoChoicesRequestRouter.choose_replicas
        fallback: list[list[RunningReplica]] = await power_of_two(
            cast(Any, self), candidate_replicas, pending_request
        )
        text = _routing_text(pending_request)
        if text is None:
            return fallback
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        cache = self.replica_queue_len_cache
        queue_lens = {key: cache.get(r.replica_id) for key, r in by_id.items()}
        preferred = preferred_replicas(
            text, list(by_id), self.index, queue_lens, max_imbalance=self.max_imbalance
        )
        if not preferred:
            return fallback
        return [[by_id[key] for key in preferred], *fallback]

    def on_request_routed(
        self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any
    ) -> None:
        text = _routing_text(pending_request)
        if text is not None:
            self.index.insert(text, replica_id.unique_id)

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        super().update_replicas(replicas)
        self.index.retain([r.replica_id.unique_id for r in replicas])

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self.index.retain([k for k in self.index.sizes if k != replica_id.unique_id])


def _routing_text(pending_request: PendingRequest | None) -> str | None:
    for arg in pending_request.args if pending_request is not None else ():
        text = getattr(arg, "routing_text", None)
        if isinstance(text, str):
            return text
    return None
