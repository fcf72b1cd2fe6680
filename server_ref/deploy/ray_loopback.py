"""Keep a replica's own gRPC server on its node's address when that address is loopback.

Ray Serve 2.60 starts an inter-deployment gRPC server in every replica (``Replica.
_on_initialized``), bound to ``[::]:0``: every interface of the machine, whatever address the
node was started with. ``serve --ray`` starts Ray on 127.0.0.1 so that nothing it runs can be
reached from another machine; that one socket would be. ``keep_replica_on_loopback``, called
in a replica's constructor (Serve runs it before ``_on_initialized``), makes Serve bind that
server to the node's address instead, the address Serve hands to the callers of the replica
anyway (``RunningReplicaInfo`` carries the node's IP and this port). On a node with a routable
address (a cluster of several machines) nothing changes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import ray
import ray.serve._private.replica as serve_replica

__all__ = ["ALL_INTERFACES", "keep_replica_on_loopback", "on_node"]

ALL_INTERFACES = "[::]:0"  # what Serve's replica binds (replica.py, _on_initialized)
BINDS = "add_port_to_grpc_server"  # the function of Serve's replica module that binds it


def on_node(address: str, node_ip: str) -> str:
    """``address`` bound to ``node_ip`` instead of every interface, when ``node_ip`` is loopback.

    >>> on_node("[::]:0", "127.0.0.1")
    '127.0.0.1:0'
    >>> on_node("[::]:0", "10.0.0.5")
    '[::]:0'
    """
    if address != ALL_INTERFACES or not ipaddress.ip_address(node_ip).is_loopback:
        return address
    host = f"[{node_ip}]" if ":" in node_ip else node_ip
    return f"{host}:0"


def keep_replica_on_loopback() -> None:
    """In a replica's constructor: its gRPC server listens on the node's loopback address."""
    add_port: Callable[[Any, str], int] = getattr(serve_replica, BINDS)
    if getattr(add_port, "keeps_loopback", False):
        return  # a second deployment in the same worker process
    node_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]

    def add_port_on_node(server: Any, address: str) -> int:
        return add_port(server, on_node(address, node_ip))

    add_port_on_node.keeps_loopback = True  # type: ignore[attr-defined]
    setattr(serve_replica, BINDS, add_port_on_node)
