"""Start ``python -m server_ref serve`` as a real process and wait until it answers.

Shared by the integration tests (tiny model) and the end-to-end tests (real default model)::

    with live_server(["--model", str(gguf), "--device", "cpu"], log_dir=tmp) as server:
        httpx.get(f"{server.base_url}/health")

The server's stdout and stderr go to a file (a pipe nobody reads would fill up and block
the server); a server that dies or never becomes healthy fails the test with that log's tail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0  # loading torch and a model on a busy 2-core machine
# One intra-op thread for servers of the tiny model: it gains nothing from two, and on a shared
# 2-core machine OpenMP's spinning threads make every step ~20x slower as soon as other work
# competes.
TINY_ENV = {"OMP_NUM_THREADS": "1"}
# Test servers drain for DRAIN_TIMEOUT_S after SIGINT (a test may pass its own
# --drain-timeout), then have 1 s to flush and 1 s of uvicorn's graceful shutdown.
DRAIN_TIMEOUT_S = 3.0
STOP_TIMEOUT_S = 15.0


class ServerError(RuntimeError):
    """The server process failed to start or to stop."""


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self, tail: int = 4000) -> str:
        """The last ``tail`` characters the server wrote to stdout/stderr."""
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(server: LiveServer, timeout: float = START_TIMEOUT_S) -> None:
    """Poll ``GET /health`` until 200; raise ``ServerError`` (with the log) otherwise."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(
                f"server exited with status {server.process.returncode} before becoming "
                f"healthy; its output:\n{server.log()}"
            )
        try:
            r = httpx.get(f"{server.base_url}/health", timeout=2.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise ServerError(
        f"server not healthy after {timeout:.0f} s (last: {last}); its output:\n{server.log()}"
    )


def stop(server: LiveServer, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGINT (the server's graceful drain), then SIGKILL; ``ServerError`` if it was needed."""
    proc = server.process
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise ServerError(
            f"server did not exit within {timeout:.0f} s of SIGINT and was killed; its "
            f"output:\n{server.log()}"
        ) from None


def spawn(
    args: Sequence[str], *, log_dir: Path, env: Mapping[str, str] | None, port: int | None = None
) -> LiveServer:
    """Start the process on ``port`` (default: a free one); ``wait_healthy`` tells when it
    serves. A server restarted on its old port appends to the same log."""
    mode = "wb" if port is None else "ab"
    port = free_port() if port is None else port
    log_path = log_dir / f"server-{port}.log"
    cmd = [sys.executable, "-m", "server_ref", "serve", "--drain-timeout", str(DRAIN_TIMEOUT_S)]
    cmd += args
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log_path.open(mode) as log_file:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT
        )
    return LiveServer(f"http://127.0.0.1:{port}", proc, log_path)


@contextlib.contextmanager
def live_server(
    args: Sequence[str],
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    start_timeout: float = START_TIMEOUT_S,
) -> Iterator[LiveServer]:
    """Run ``python -m server_ref serve ARGS --host 127.0.0.1 --port <free>`` for the block,
    with ``env`` added to the environment."""
    for attempt in range(3):
        server = spawn(args, log_dir=log_dir, env=env)
        try:
            wait_healthy(server, start_timeout)
            break
        except ServerError:
            stop(server)
            # another process took the free port between our probe and the server's bind
            if attempt < 2 and "address already in use" in server.log().lower():
                continue
            raise
    try:
        yield server
    finally:
        stop(server)


# ``factory(*flags)`` -> ``with factory(...) as server:`` (see the integration conftest)
ServerFactory = Callable[..., AbstractContextManager[LiveServer]]
