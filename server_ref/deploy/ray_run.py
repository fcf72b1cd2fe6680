"""``python -m server_ref serve --ray``: the Serve application on a local Ray instance.

Starts Ray on this machine with its node address on 127.0.0.1 (nothing listens on another
interface unless ``--host`` asks for it), Serve's HTTP proxy on ``--host``/``--port``, and the
application; it returns after SIGINT or SIGTERM, once Serve and Ray are shut down (replicas
finish their engines' work as Serve stops them).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

import ray
from ray import serve

from server_ref.api.serve import ServeOptions
from server_ref.deploy.ray_app import application
from server_ref.deploy.replicas import ReplicaPlan

__all__ = ["APP_NAME", "serve_on_ray"]

APP_NAME = "server_ref"


def serve_on_ray(options: ServeOptions, plan: ReplicaPlan, *, cores: int) -> None:
    """Serve ``options`` with ``plan``'s replicas until SIGINT/SIGTERM.

    >>> serve_on_ray(ServeOptions("m.gguf"), plan_replicas(2), cores=2)  # doctest: +SKIP
    """
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
        serve.run(application(options, plan), name=APP_NAME, route_prefix="/")
        print(
            f"serving {options.model} on Ray Serve: {plan.min_replicas}..{plan.max_replicas} "
            f"replicas x {plan.cpus_per_replica} CPUs on http://{options.host}:{options.port} "
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
