"""``ray_loopback``: which address a replica's gRPC server binds; no Ray cluster is started.
Skipped without the ``ray`` extra. The integration test (``test_ray_serve``) lists every
socket a served application listens on."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("ray.serve", reason="needs the ray extra: pip install 'llm-sdk[ray]'")

import ray
import ray.serve._private.replica as serve_replica

from server_ref.deploy.ray_loopback import ALL_INTERFACES, keep_replica_on_loopback, on_node


@pytest.mark.parametrize(
    ("node_ip", "bound"),
    [
        ("127.0.0.1", "127.0.0.1:0"),
        ("127.0.0.2", "127.0.0.2:0"),
        ("::1", "[::1]:0"),
        ("10.0.0.5", ALL_INTERFACES),  # a routable node: other machines must reach it
        ("192.168.1.20", ALL_INTERFACES),
    ],
)
def test_every_interface_becomes_the_loopback_node_address(node_ip: str, bound: str) -> None:
    assert on_node(ALL_INTERFACES, node_ip) == bound


def test_other_addresses_are_left_alone() -> None:
    assert on_node("0.0.0.0:9000", "127.0.0.1") == "0.0.0.0:9000"
    assert on_node("127.0.0.1:0", "127.0.0.1") == "127.0.0.1:0"


def test_the_replica_binds_its_node_address_once_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    bound: list[str] = []

    def add_port(server: Any, address: str) -> int:
        bound.append(address)
        return 4321

    monkeypatch.setattr(serve_replica, "add_port_to_grpc_server", add_port)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "127.0.0.1")
    keep_replica_on_loopback()
    keep_replica_on_loopback()  # a second deployment in the same worker: wrapped once
    port = serve_replica.add_port_to_grpc_server(object(), ALL_INTERFACES)
    assert (port, bound) == (4321, ["127.0.0.1:0"])
