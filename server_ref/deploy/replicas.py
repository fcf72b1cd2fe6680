"""How many engines, and the Ray Serve settings that fit an LLM engine (no Ray imported here).

One replica is one engine: its batch (``max_num_seqs``) and its waiting queue (``max_queue``)
are what it can hold, so Serve sends it at most that many requests at once
(``max_ongoing_requests``); the waiting ones queue inside the engine, where the scheduler and
the prefix cache see them. Requests beyond every replica's capacity wait in Serve's router, up
to ``max_queue`` per replica; past that Serve answers 503, which clients retry.

Autoscaling (used when ``max_replicas > min_replicas``) aims at one full batch per replica
(``target_ongoing_requests = max_num_seqs``): above it, requests wait in the engine's queue and
time to first token grows. Upscaling waits 30 s (a burst shorter than a model load is better
queued); downscaling waits 10 minutes (a replica costs a model load to bring back).

CPU threads: the replicas of one machine share its cores, ``cores // replicas`` each, so N
replicas of PyTorch do not oversubscribe it (OpenMP threads that spin on a busy core make every
step many times slower). On CUDA each replica takes one GPU.

Routing (``router``): ``default`` is Serve's power of two choices, straight from its HTTP proxy
to the replicas. ``prefix`` sends a conversation to the replica whose prefix cache holds its
earlier turns (``affinity``) unless that replica's queue is ``max_num_seqs // 16`` (at least
2) requests longer than the least loaded one's: on a CPU every extra sequence in a batch slows
the others' first token, so a small margin. It needs the prompt before a replica is chosen, so
one front deployment (no CPU reserved: it only parses and relays) reads each request and
forwards it to the engines (``forwarding``), or, behind HAProxy, one route deployment answers
HAProxy's question of where each request goes (``ray_route``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["ROUTERS", "ReplicaPlan", "plan_replicas"]

UPSCALE_DELAY_S = 30.0
DOWNSCALE_DELAY_S = 600.0
ROUTERS = ("default", "prefix")
PREFIX_ROUTER = "server_ref.deploy.ray_router:PrefixAffinityRouter"


@dataclass(frozen=True)
class ReplicaPlan:
    """The replicas of one deployment and the Serve settings of each."""

    min_replicas: int
    max_replicas: int
    cpus_per_replica: int  # Ray CPU resources, and the replica's torch/OpenMP threads
    gpus_per_replica: float
    max_ongoing_requests: int
    max_queued_requests: int
    target_ongoing_requests: int
    router: str = "default"  # one of ROUTERS
    max_imbalance: int = 8  # the prefix router's "overloaded": this many more than the least

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments of ``serve.deployment(...)`` / ``Deployment.options(...)``.

        >>> plan_replicas(2, cores=4).deployment_options()["num_replicas"]
        2
        """
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": {
                "num_cpus": self.cpus_per_replica,
                "num_gpus": self.gpus_per_replica,
                "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(self.cpus_per_replica)}},
            },
        }
        if self.max_replicas == self.min_replicas:
            options["num_replicas"] = self.min_replicas
        else:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": UPSCALE_DELAY_S,
                "downscale_delay_s": DOWNSCALE_DELAY_S,
            }
        if self.router == "prefix":
            options["request_router_config"] = {
                "request_router_class": PREFIX_ROUTER,
                "request_router_kwargs": {"max_imbalance": self.max_imbalance},
            }
        return options

    def front_options(self) -> dict[str, Any]:
        """``Deployment.options(...)`` of what ``router="prefix"`` adds to the engines (the
        front before them, or HAProxy's route deployment): one replica (the router's index is
        per process), no CPU reserved, never the narrowest queue.

        >>> plan_replicas(2, cores=2, router="prefix").front_options()["num_replicas"]
        1
        """
        return {
            "num_replicas": 1,
            "max_ongoing_requests": self.max_replicas * self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": 0},
        }


def plan_replicas(
    replicas: int,
    *,
    max_replicas: int | None = None,
    cpus_per_replica: int | None = None,
    gpus_per_replica: float = 0.0,
    max_num_seqs: int = 32,
    max_queue: int = 256,
    cores: int | None = None,
    one_machine: bool = True,
    router: str = "default",
) -> ReplicaPlan:
    """The plan for ``replicas`` engines on a machine of ``cores`` CPUs (default: this one);
    ``ValueError`` (one line) for a plan that cannot run. ``one_machine=False`` (a cluster,
    from a Serve config file): the replicas need not fit on this machine together. ``router``:
    one of ``ROUTERS``.

    >>> plan_replicas(2, cores=2).cpus_per_replica
    1
    """
    cores = cores if cores is not None else (os.cpu_count() or 1)
    top = replicas if max_replicas is None else max_replicas
    if replicas < 1:
        raise ValueError(f"--replicas must be 1 or more, not {replicas}")
    if top < replicas:
        raise ValueError(f"--max-replicas ({top}) must be at least --replicas ({replicas})")
    cpus = cpus_per_replica if cpus_per_replica is not None else max(1, cores // top)
    if cpus < 1:
        raise ValueError(f"--cpus-per-replica must be 1 or more, not {cpus}")
    if cpus > cores:
        raise ValueError(f"--cpus-per-replica {cpus} is more than this machine's {cores} CPUs")
    if one_machine and cpus * replicas > cores:
        raise ValueError(
            f"{replicas} replicas x {cpus} CPUs need {cpus * replicas} CPUs; this machine has "
            f"{cores} (Ray would wait for them forever)"
        )
    if max_num_seqs < 1 or max_queue < 1:
        raise ValueError("max_num_seqs and max_queue must be 1 or more")
    if router not in ROUTERS:
        raise ValueError(f"--router must be one of {', '.join(ROUTERS)}, not {router!r}")
    return ReplicaPlan(
        min_replicas=replicas,
        max_replicas=top,
        cpus_per_replica=cpus,
        gpus_per_replica=gpus_per_replica,
        max_ongoing_requests=max_num_seqs + max_queue,
        max_queued_requests=max_queue,
        target_ongoing_requests=max_num_seqs,
        router=router,
        max_imbalance=max(2, max_num_seqs // 16),
    )
