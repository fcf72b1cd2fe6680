"""The ``--ray`` options of ``python -m server_ref serve``, checked before anything starts."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from typing import TYPE_CHECKING

from sdk.cli.base import UsageError
from server_ref.deploy.haproxy import HAPROXY_ON, INGRESSES, NO_HAPROXY, find_haproxy
from server_ref.deploy.replicas import ROUTERS, ReplicaPlan, plan_replicas

if TYPE_CHECKING:
    from server_ref.api.serve import ServeOptions

__all__ = ["LOCAL_RAY_ENV", "add_ray_options", "check_ray_options", "local_ray_env", "run_on_ray"]

# Read by Ray when it is first imported. Ray turns a node address of 127.0.0.1 into the
# machine's outward address unless "clusters" are off, as they are on macOS and Windows; off,
# the head node, its workers and its drivers all use the loopback address (Ray's
# services.get_node_ip_address). Several machines are joined with ``ray start`` instead.
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def local_ray_env(ingress: str = "proxy") -> None:
    """Keep the Ray instance of this process on 127.0.0.1 (and its Serve ingress HAProxy when
    ``ingress`` is ``"haproxy"``); call before the first ``import ray``.

    >>> local_ray_env(); import ray  # doctest: +SKIP
    """
    for name, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(name, value)
    if ingress == "haproxy":
        os.environ.update(HAPROXY_ON)


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    """Declare ``--ray``, ``--replicas``, ``--max-replicas``, ``--cpus-per-replica``,
    ``--router`` and ``--ingress``."""
    group = parser.add_argument_group("Ray Serve (pip install 'llm-sdk[ray]')")
    group.add_argument(
        "--ray",
        action="store_true",
        help="serve as a Ray Serve application on a local Ray instance: one engine per replica",
    )
    group.add_argument("--replicas", type=int, default=1, help="replicas (engines) with --ray")
    group.add_argument(
        "--max-replicas",
        type=int,
        default=None,
        help="autoscale between --replicas and this many on ongoing requests",
    )
    group.add_argument(
        "--cpus-per-replica",
        type=int,
        default=None,
        help="CPUs (and torch threads) of each replica (default: cores // replicas)",
    )
    group.add_argument(
        "--router",
        default="default",
        metavar="|".join(ROUTERS),
        help="how requests pick a replica: Serve's power of two choices (default), or prefix "
        "affinity (a conversation stays with the replica that has its prefix cached)",
    )
    group.add_argument(
        "--ingress",
        choices=INGRESSES,
        default="proxy",
        help="what takes the HTTP connections: Serve's HTTP proxy (default), or HAProxy in "
        "front of replicas that serve HTTP themselves (faster; Serve's HAProxy ingress)",
    )


def check_ray_options(args: argparse.Namespace, max_queue: int) -> ReplicaPlan | None:
    """``None`` without ``--ray``; else the replica plan, or ``UsageError`` (one line)."""
    if not args.ray:
        given = args.max_replicas is not None or args.cpus_per_replica or args.router != "default"
        if args.replicas != 1 or given or args.ingress != "proxy":
            raise UsageError(
                "--replicas, --max-replicas, --cpus-per-replica, --router and --ingress need --ray"
            )
        return None
    if args.otlp_traces_endpoint is not None:
        raise UsageError("--otlp-traces-endpoint is not supported with --ray yet")
    try:
        plan = plan_replicas(
            args.replicas,
            max_replicas=args.max_replicas,
            cpus_per_replica=args.cpus_per_replica,
            gpus_per_replica=1.0 if _cuda(args.device) else 0.0,
            max_num_seqs=args.max_num_seqs,
            max_queue=max_queue,
            router=args.router,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    local_ray_env(args.ingress)
    try:
        import ray.serve  # noqa: F401
    except ImportError:
        raise UsageError("--ray needs Ray Serve: pip install 'llm-sdk[ray]'") from None
    if args.ingress == "haproxy" and find_haproxy() is None:
        raise UsageError(NO_HAPROXY)
    return plan


def run_on_ray(options: ServeOptions, plan: ReplicaPlan, *, ingress: str = "proxy") -> int:
    """Serve ``options`` on a local Ray instance (``ingress``: ``haproxy.INGRESSES``) until
    SIGINT/SIGTERM; the exit status.

    The models are pulled here, once, before the replicas start (they would race for the
    cache otherwise); the replicas then find them cached under the same names.
    """
    from server_ref.deploy.ray_run import serve_on_ray
    from server_ref.loading import registry

    registry.resolve_model(options.model, kind="chat", progress=options.progress)
    if options.embedding_model is not None:
        registry.resolve_model(
            options.embedding_model, kind="embedding", progress=options.embedding_progress
        )

    # the replicas get the options pickled: the progress lines stay here
    serve_on_ray(
        replace(options, progress=None, embedding_progress=None),
        plan,
        cores=os.cpu_count() or 1,
        ingress=ingress,
    )
    return 0


def _cuda(device: str) -> bool:
    if device == "cpu":
        return False
    import torch

    return device == "cuda" or torch.cuda.is_available()
