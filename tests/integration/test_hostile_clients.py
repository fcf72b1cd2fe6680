"""Slow and hostile clients cost a bounded amount and keep nobody else out.

Raw sockets on 127.0.0.1 play the clients an HTTP library would not: one that stops reading
its stream, sends endless headers, never finishes its body or its request head, or opens
thousands of connections and sends nothing. Bounds that need small values to be seen in a
test run on an in-process server (``kit.in_process``) with the real connection settings
(``connections.uvicorn_options``); the others on the real ``serve`` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kit.in_process import running_engine, serve_in_thread
from kit.live_server import LiveServer

from server_ref.api.app import create_app
from server_ref.api.connections import ConnectionLimits, uvicorn_options
from server_ref.engine.async_engine import SLOW_CONSUMER, AsyncEngine

SOCKET_TIMEOUT_S = 15.0  # no test here waits longer for one answer


def connect(port: int, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(SOCKET_TIMEOUT_S)
    sock.connect(("127.0.0.1", port))
    return sock


def post(path: str, body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (``socket.timeout`` if it never does)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def engine(tiny_gguf: Path) -> Iterator[AsyncEngine]:
    with running_engine(tiny_gguf, max_pending_outputs=64) as engine:
        yield engine


@contextlib.contextmanager
def bounded_server(engine: AsyncEngine, limits: ConnectionLimits, **app: float) -> Iterator[str]:
    with serve_in_thread(
        create_app(engine, enable_web=False, **app), **uvicorn_options(limits)
    ) as url:
        yield url


# -- a reader that stops reading ----------------------------------------------------------


async def test_a_client_that_stops_reading_is_cut_off_while_others_stream(
    engine: AsyncEngine,
) -> None:
    with bounded_server(engine, ConnectionLimits()) as url:
        stalled = connect(port_of(url), rcvbuf=4096)
        body = {
            "messages": [{"role": "user", "content": "never read"}],
            "max_tokens": 480,
            "ignore_eos": True,
            "temperature": 0,
            "stream": True,
            "logprobs": True,
            "top_logprobs": 20,  # big events: the socket buffers fill after a few hundred
        }
        stalled.sendall(post("/v1/chat/completions", body))
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            reader = {**body, "messages": [{"role": "user", "content": "read"}], "max_tokens": 200}
            r = await http.post("/v1/chat/completions", json=reader)
            events = [e for e in r.text.split("\n\n") if e.startswith("data: {")]
            last = json.loads(events[-1].removeprefix("data: "))
            assert last["choices"][0]["finish_reason"] == "length"  # it was not held up

            deadline = time.monotonic() + 60
            while engine.stats().running and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert engine.stats().running == 0, "the stalled request still runs"
            assert engine.stats().kv_blocks_used == 0

        # What it missed was kept (bounded), and ends with why it stopped.
        stalled.settimeout(2.0)
        received = b""
        with contextlib.suppress(TimeoutError):
            while b"data: [DONE]" not in received and (chunk := stalled.recv(65536)):
                received += chunk
        stalled.close()
    payloads = [
        line.removeprefix(b"data: ") for line in received.split(b"\n") if line.startswith(b"data:")
    ]
    assert payloads[-1] == b"[DONE]"
    error = json.loads(payloads[-2])["error"]
    assert error["message"] == SLOW_CONSUMER.format(pending=64)
    assert error["type"] == "service_unavailable_error"
    assert len(payloads) < 480  # generation stopped well before max_tokens


# -- request heads and bodies -------------------------------------------------------------


def test_oversized_headers_get_431_and_the_connection_closes(tiny_server: LiveServer) -> None:
    port = port_of(tiny_server.base_url)
    for size, status in ((8 * 1024, b"200"), (20 * 1024, b"431"), (1024 * 1024, b"431")):
        with connect(port) as sock:
            pad = "a" * size
            sock.sendall(f"GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: {pad}\r\n".encode())
            with contextlib.suppress(ConnectionResetError):  # closed before all was sent
                sock.sendall(b"Connection: close\r\n\r\n")
            answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 " + status), (size, answer[:200])
        if status == b"431":
            error = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
            assert error["code"] == "request_header_fields_too_large"


def test_a_body_that_never_finishes_gets_408(engine: AsyncEngine) -> None:
    head = "POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    with (
        bounded_server(engine, ConnectionLimits(), body_timeout_s=1.0) as url,
        connect(port_of(url)) as sock,
    ):
        sock.sendall(f"{head}Content-Length: 1000\r\n\r\n".encode() + b'{"prompt": "')
        answer = read_until_closed(sock)  # then nothing more is sent
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"connection: close" in head.lower()
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_timeout")


def test_a_request_head_that_never_finishes_is_cut_off(engine: AsyncEngine) -> None:
    limits = ConnectionLimits(head_timeout_s=1.0)
    with bounded_server(engine, limits) as url:
        silent = connect(port_of(url))
        trickle = connect(port_of(url))
        trickle.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")  # and never the blank line
        started = time.monotonic()
        for sock in (silent, trickle):
            with sock:
                assert read_until_closed(sock) == b""  # closed, without an answer
        assert time.monotonic() - started < SOCKET_TIMEOUT_S
        assert httpx.get(f"{url}/health").status_code == 200


def test_connections_beyond_the_cap_get_503_in_openai_shape(engine: AsyncEngine) -> None:
    with bounded_server(engine, ConnectionLimits(max_connections=8)) as url:
        idle = [connect(port_of(url)) for _ in range(8)]
        time.sleep(0.2)  # let the server accept them
        r = httpx.get(f"{url}/v1/models", timeout=10)
        assert r.status_code == 503, r.text
        assert r.headers["connection"] == "close"
        assert r.json()["error"]["code"] == "too_many_connections"
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 200


# -- many idle connections, on the real server ---------------------------------------------


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts fds in /proc")
def test_two_thousand_idle_connections_are_held_then_shed(tiny_server: LiveServer) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2300:
        pytest.skip(f"needs 2,300 file descriptors in this process, ulimit -n is {soft}")
    pid = tiny_server.process.pid
    before = open_fds(pid)
    port = port_of(tiny_server.base_url)
    idle = [connect(port) for _ in range(2000)]
    try:
        started = time.monotonic()
        r = httpx.post(f"{tiny_server.base_url}/tokenize", json={"prompt": "hi"}, timeout=30)
        assert r.status_code == 200, r.text  # a normal request is not kept out
        assert open_fds(pid) >= before + 2000  # all of them were accepted and held
        # the server closes every connection that sent no request within the head timeout
        for sock in idle:
            assert read_until_closed(sock) == b""
        shed_after = time.monotonic() - started
        assert shed_after < ConnectionLimits().head_timeout_s + SOCKET_TIMEOUT_S
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 5
    while open_fds(pid) > before + 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_fds(pid) <= before + 5
