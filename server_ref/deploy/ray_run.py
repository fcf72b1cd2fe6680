"""``python -m server_ref serve --ray``: the Serve application on a local Ray instance.

Starts Ray on this machine with its node address on 127.0.0.1 (nothing listens on another
interface unless ``--host`` asks for it), Serve's ingress on ``--host``/``--port`` (its HTTP
proxy, or HAProxy: ``haproxy``), and the application; it returns after SIGINT or SIGTERM, once
Serve and Ray are shut down (replicas finish their engines' work as Serve stops them).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

import ray
from ray import serve

from server_ref.api.serve import ServeOptions
from server_ref.deploy.haproxy import haproxy_env
from server_ref.deploy.ray_app import application
from server_ref.deploy.replicas import ReplicaPlan

__all__ = ["APP_NAME", "serve_on_ray"]

APP_NAME = "server_ref"
INGRESS_NAMES = {"proxy": "Serve's HTTP proxy", "haproxy": "HAProxy"}


def serve_on_ray(
    options: ServeOptions, plan: ReplicaPlan, *, cores: int, ingress: str = "proxy"
) -> None:
    """Serve ``options`` with ``plan``'s replicas until SIGINT/SIGTERM.

    >>> serve_on_ray(ServeOptions("m.gguf"), plan_replicas(2), cores=2)  # doctest: +SKIP
    """
    scratch = Path(tempfile.mkdtemp(prefix="server-ref-ray-"))
    try:
        if ingress == "haproxy":  # read by Serve's processes, which the raylet starts
            os.environ.update(haproxy_env(options.host, scratch))
        _serve(options, plan, cores=cores, ingress=ingress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _serve(options: ServeOptions, plan: ReplicaPlan, *, cores: int, ingress: str) -> None:
    stop = threading.Event()
    serving = False

    def on_signal(sig: int, frame: FrameType | None) -> None:
        stop.set()
        if not serving:  # still starting: interrupt serve.run, then shut down what started
            raise KeyboardInterrupt

    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",
        num_cpus=cores,
        include_dashboard=False,
        logging_level=getattr(logging, options.log_level.upper()),
        log_to_driver=options.log_level == "debug",
    )
    # after ray.init, which installs handlers of its own
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(
            http_options={"host": options.host, "port": options.port},
            logging_config={"log_level": options.log_level.upper()},
        )
        serve.run(application(options, plan, ingress), name=APP_NAME, route_prefix="/")
        print(
            f"serving {options.model} on Ray Serve: {plan.min_replicas}..{plan.max_replicas} "
            f"replicas x {plan.cpus_per_replica} CPUs on http://{options.host}:{options.port} "
            f"through {INGRESS_NAMES[ingress]} "
            f"(Ray at {ray.get_runtime_context().gcs_address})",
            file=sys.stderr,
            flush=True,
        )
        serving = True
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
