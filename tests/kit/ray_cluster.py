"""The Ray side of a ``server_ref serve --ray`` test server: connect to the Ray instance it
started (its address is in the server's log), find its replica actors, read their engines'
load, kill one.

    ray_cluster = RayCluster.of(server)  # connects this process as a Ray driver
    ray_cluster.replicas()               # {actor name: actor handle}
    ray_cluster.close()                  # disconnects; the server shuts Ray down itself
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve

from kit.live_server import LiveServer

APP = "server_ref"  # server_ref.deploy.ray_run.APP_NAME
REPLICA_PREFIX = "SERVE_REPLICA::"


@dataclass
class RayCluster:
    address: str

    @classmethod
    def of(cls, server: LiveServer, *, within: float = 120.0) -> RayCluster:
        """Connect once the server logged its "serving" line (Serve may answer before)."""
        deadline = time.monotonic() + within
        while not (found := re.search(r"\(Ray at ([\d.]+:\d+)\)", server.log(100_000))):
            assert time.monotonic() < deadline, f"no Ray address in the log:\n{server.log()}"
            time.sleep(0.2)
        ray.init(address=found[1], namespace="serve", log_to_driver=False)
        return cls(found[1])

    def close(self) -> None:
        # Serve caches its controller's handle for this driver's job id, and the driver of the
        # next test server's Ray instance gets the same job id: the handle would be stale
        serve.context._set_global_client(None)
        ray.shutdown()

    def replicas(self) -> dict[str, Any]:
        """The live replica actors of the app, by name."""
        names = [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(REPLICA_PREFIX) and f"#{APP}#" in a["name"]
        ]
        handles = {}
        for name in names:
            try:
                handles[name] = ray.get_actor(name, namespace="serve")
            except ValueError:  # died between the listing and the lookup
                continue
        return handles

    def running_replicas(self) -> int:
        status = serve.status().applications[APP].deployments[APP]
        return int(status.replica_states.get("RUNNING", 0))

    def engine_loads(self) -> dict[str, dict[str, Any]]:
        """Each replica's ``record_routing_stats`` (running, waiting, KV blocks used)."""
        handles = self.replicas()
        stats = ray.get([h.record_routing_stats.remote() for h in handles.values()], timeout=30)
        return dict(zip(handles, stats, strict=True))

    def wait_replicas(self, count: int, *, within: float) -> None:
        """Until ``count`` replicas are RUNNING and answer; AssertionError after ``within`` s."""
        deadline = time.monotonic() + within
        while True:
            try:
                if self.running_replicas() == count and len(self.engine_loads()) == count:
                    return
            except (ray.exceptions.RayActorError, KeyError):
                pass  # a replica that is starting or stopping
            if time.monotonic() > deadline:
                raise AssertionError(f"not {count} running replicas after {within} s")
            time.sleep(0.5)
