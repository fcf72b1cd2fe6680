"""Bounds on what clients can hold of the server at the HTTP level, and the uvicorn settings
that carry them (``serve`` uses ``uvicorn_options``).

A client that connects and sends nothing, sends its headers a byte at a time, sends endless
headers, or opens thousands of connections must cost a bounded amount and never keep others
out. uvicorn bounds some of this; the rest is done here, by a subclass of its h11 protocol:

==========================  =====================================================================
idle between requests       closed after ``keep_alive_s`` (uvicorn's own keep-alive timeout)
request line and headers    must be complete ``head_timeout_s`` after the connection is ready
                            for a request; uvicorn has no such timeout, so a connection that
                            never sends a request, or trickles one (slowloris), stayed open
                            forever. Closed without an answer, as an idle keep-alive is.
request head size           ``max_head_bytes`` (16 KiB, Node.js's default): a 431 in OpenAI's
                            shape and the connection is closed. Counted here: h11's own limit
                            only applies to a head that arrives in pieces, and on loopback a
                            20 KiB head arrives whole.
open connections            ``max_connections``, from the file-descriptor limit (less a reserve
                            for the model, logs and the engine); a connection beyond it gets a
                            503 in OpenAI's shape and ``Connection: close`` for its request.
                            (uvicorn's ``limit_concurrency`` would answer in plain text.)
pending connections         the listen ``backlog`` (uvicorn's default, 2048)
kernel send buffer          ``send_buffer_bytes`` per connection (Linux doubles it): without it
                            the kernel grows a socket's buffer to 4 MB for a client that does
                            not read (measured on loopback); 256 KiB still carries 2.5 MB/s at
                            100 ms round trip, far above a token stream
request body                ``middleware.BodyLimitMiddleware``: a size limit and a deadline
slow readers of a stream    ``engine.async_engine``: aborted after so many unread outputs
==========================  =====================================================================
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
from dataclasses import dataclass, field
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from server_ref.api.errors import error_body
from server_ref.api.readiness import Receive, Scope, Send

# file descriptors kept for what is not a client connection: the model file, log files,
# the interpreter's and torch's own (a process serving nothing holds about 30)
FD_RESERVE = 128
LINGER_S = 2.0  # after refusing a request head: how long its client has to read the answer


def default_max_connections() -> int:
    """The soft limit on open files, less ``FD_RESERVE`` (at least 16)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(16, soft - FD_RESERVE)


@dataclass(frozen=True)
class ConnectionLimits:
    keep_alive_s: float = 5.0
    head_timeout_s: float = 10.0
    max_head_bytes: int = 16 * 1024
    max_connections: int = field(default_factory=default_max_connections)
    backlog: int = 2048
    send_buffer_bytes: int = 128 * 1024


def uvicorn_options(limits: ConnectionLimits) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.Config`` that put ``limits`` in force.

    >>> uvicorn.Config(app, **uvicorn_options(ConnectionLimits()))  # doctest: +SKIP
    """

    class Protocol(BoundedH11Protocol):
        LIMITS = limits

    return {
        "http": Protocol,
        "timeout_keep_alive": limits.keep_alive_s,
        "h11_max_incomplete_event_size": limits.max_head_bytes,
        "backlog": limits.backlog,
        "limit_concurrency": None,  # counted per connection by the protocol instead
    }


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a connection cap."""

    LIMITS = ConnectionLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes, self._head_tail = 0, b""
        self._refused = False
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.LIMITS.send_buffer_bytes)
        if len(self.connections) > self.LIMITS.max_connections:
            self.app = _over_capacity  # this connection's requests are refused
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and drop what is still coming
        if self.conn.their_state is h11.IDLE and self._head_too_big(data):
            self._refuse_head()
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()  # the request line and headers are in
            self._head_bytes, self._head_tail = 0, b""

    def _head_too_big(self, data: bytes) -> bool:
        """Count the bytes of the request head so far; the blank line ends it (it may span
        two reads: the tail of the previous one is searched too)."""
        end = (self._head_tail + data).find(b"\r\n\r\n")
        self._head_bytes += len(data) if end < 0 else end + 4 - len(self._head_tail)
        self._head_tail = data[-3:]
        return self._head_bytes > self.LIMITS.max_head_bytes

    def _refuse_head(self) -> None:
        """Answer 431 and close after a lingering read (as nginx's lingering_close): closing
        with unread input would send a reset that can destroy the answer before the client
        reads it."""
        self._refused = True
        self._cancel_head_timer()
        self.transport.write(_head_too_big(self.LIMITS.max_head_bytes))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._cancel_head_timer()
        self._head_bytes, self._head_tail = 0, b""
        self._head_timer = self.loop.call_later(self.LIMITS.head_timeout_s, self._head_late)

    def _head_late(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE:
            self.timeout_keep_alive_handler()  # closes, as for an idle keep-alive connection

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


def _head_too_big(limit: int) -> bytes:
    """A whole 431 response, written raw: h11 cannot answer a request it has not parsed."""
    body = json.dumps(
        error_body(
            f"The request line and headers are larger than {limit} bytes.",
            "invalid_request_error",
            code="request_header_fields_too_large",
        )
    ).encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


_OVER_CAPACITY = json.dumps(
    error_body(
        "The server has too many open connections. Retry shortly.",
        "service_unavailable_error",
        code="too_many_connections",
    )
).encode()


async def _over_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_OVER_CAPACITY)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": _OVER_CAPACITY})
