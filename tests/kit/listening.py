"""The TCP sockets a process and all its descendants listen on, read from Linux's /proc.

    listening(server.process.pid)  # [Listener(pid, "raylet", "127.0.0.1", 43209), ...]

Ray started by a server process (``ray.init(address="local")``) is its descendant: its GCS,
raylet, agents and every worker, replicas included.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"  # the TCP state column of /proc/net/tcp{,6}


@dataclass(frozen=True)
class Listener:
    pid: int
    name: str
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        address = ipaddress.ip_address(self.host)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback


def listening(root: int) -> list[Listener]:
    """Every listening TCP socket of ``root`` and its descendants (ports by their owners)."""
    sockets = _listening_sockets()
    found = []
    for pid in _descendants(root):
        for inode in _socket_inodes(pid):
            if inode in sockets:
                host, port = sockets[inode]
                found.append(Listener(pid, _name(pid), host, port))
    return found


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass  # exited, or an fd closed while listed
    return inodes


def _listening_sockets() -> dict[str, tuple[str, int]]:
    """inode -> (host, port) of the machine's listening TCP sockets."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != LISTEN:
                continue
            hex_host, hex_port = fields[1].split(":")
            sockets[fields[9]] = (_host(hex_host), int(hex_port, 16))
    return sockets


def _host(hex_host: str) -> str:
    # the kernel prints each 32-bit word of the address in host (little-endian) order
    words = [bytes.fromhex(hex_host[i : i + 8])[::-1] for i in range(0, len(hex_host), 8)]
    packed = b"".join(words)
    return str(ipaddress.ip_address(packed))


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
