"""An HTTP request carried whole from a front process to an engine replica, and its response
carried back as ASGI messages (no Ray imported here).

Serve's HTTP proxy hands a replica the request's ASGI scope and fetches the body only when
the app reads it, so a request router that runs before the replica is chosen cannot see the
prompt. With ``--router prefix`` a light front deployment (``ray_front``) is the ingress
instead: ``Front`` reads the body, and passes a ``ForwardedRequest`` (scope, body, the text
the router matches) through a streaming call to the engine replica the router chose, where
``run_forwarded`` runs the server's own FastAPI app on it and yields what the app sends. The
replicas answer with the same app, so routes, errors and SSE bytes are those of one server;
Ray Serve LLM is built the same way (an OpenAI ingress deployment before the engines).

Limits keep their meaning: a ``Content-Length`` over ``max_body_bytes`` is forwarded without
a body (the app answers 413 from the header), a streamed body is read up to one byte past the
limit (the app counts it and answers 413), and a body not complete within ``body_timeout_s``
is forwarded as it is, incomplete (the app answers 408 when its own timeout ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server_ref.api.errors import ServiceUnavailableError
from server_ref.api.sse import DONE_EVENT, encode_event
from server_ref.deploy.affinity import routing_text

__all__ = ["Forward", "ForwardedRequest", "Front", "read_request", "run_forwarded"]

log = logging.getLogger("server_ref.deploy")

# the keys of an HTTP scope (ASGI 3), all plain values that pickle; the proxy's own
# additions (state, extensions) stay in the front process
SCOPE_KEYS = (
    "type", "asgi", "http_version", "method", "scheme", "path", "raw_path", "query_string",
    "root_path", "headers", "client", "server",
)  # fmt: skip
RETRY_AFTER_S = 1
DISCONNECT_GRACE_S = 5.0


@dataclass(frozen=True)
class ForwardedRequest:
    """One HTTP request, read whole by the front (see the module docstring)."""

    scope: dict[str, Any]
    body: bytes
    complete: bool = True  # False: the client stopped sending within the body timeout
    routing_text: str | None = None  # what ``ray_router.PrefixAffinityRouter`` matches


class Forward(Protocol):
    """A running forwarded call: its response messages in batches; ``cancel`` stops it on
    the replica (Serve's ``DeploymentResponseGenerator`` is one)."""

    def __aiter__(self) -> AsyncIterator[list[Message]]: ...

    def cancel(self) -> None: ...


async def read_request(
    scope: Scope, receive: Receive, *, max_body_bytes: int, body_timeout_s: float
) -> ForwardedRequest | None:
    """The request of ``scope``, its body read from ``receive``; ``None`` if the client left.

    >>> await read_request(scope, receive, max_body_bytes=1024, body_timeout_s=60)  # doctest: +SKIP
    """
    forwarded = {k: scope[k] for k in SCOPE_KEYS if k in scope}
    for name, value in scope["headers"]:
        if name == b"content-length" and not (value.isdigit() and int(value) <= max_body_bytes):
            return ForwardedRequest(forwarded, b"")  # the app answers from the header
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(body_timeout_s):
            while size <= max_body_bytes:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                parts.append(message.get("body", b""))
                size += len(parts[-1])
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        return ForwardedRequest(forwarded, b"".join(parts), complete=False)
    body = b"".join(parts)
    return ForwardedRequest(forwarded, body, routing_text=routing_text(scope["path"], body))


async def run_forwarded(app: ASGIApp, request: ForwardedRequest) -> AsyncIterator[list[Message]]:
    """Run ``app`` on ``request``; yield the messages it sends, in batches (whatever has
    queued up since the last batch). Closing the iterator (the caller went away) is a client
    disconnect to the app, which stops its stream and frees the engine's KV slot.

    >>> async for batch in run_forwarded(app, request): ...  # doctest: +SKIP
    """
    outbox: asyncio.Queue[Message | None] = asyncio.Queue()
    gone = asyncio.Event()
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request.body, "more_body": not request.complete}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        outbox.put_nowait(message)

    async def run() -> None:
        try:
            await app(dict(request.scope), receive, send)
        finally:
            outbox.put_nowait(None)

    task = asyncio.create_task(run())
    try:
        while True:
            batch = [await outbox.get()]
            while not outbox.empty():
                batch.append(outbox.get_nowait())
            end = batch[-1] is None
            messages = [m for m in batch if m is not None]
            if messages:
                yield messages
            if end:
                break
        await task  # the app's own exception, if it raised one
    finally:
        # Here too when the caller went away (the iterator closed or cancelled): the app sees
        # the disconnect, stops its stream and aborts the engine's requests, as under uvicorn;
        # an app that does not notice in time is cancelled.
        gone.set()
        try:
            await asyncio.wait((task,), timeout=DISCONNECT_GRACE_S)
        finally:
            task.cancel()  # a no-op once it ended


class Front:
    """The front's ASGI app: read the request, ``forward`` it, relay the response; a 503
    the SDK retries if the replica fails before answering (it died, or Serve's queue is
    full), an SSE error event if it fails mid-stream. A client that leaves is seen by Serve's
    proxy, which cancels this request; the cancel goes on to the replica. (Listening on
    ``receive`` here as well, after the body, made the proxy close every kept-alive
    connection after its first response.)

    >>> app = Front(handle.options(stream=True).forward.remote, max_body_bytes=1024,
    ...             body_timeout_s=60)  # doctest: +SKIP
    """

    def __init__(
        self,
        forward: Callable[[ForwardedRequest], Forward],
        *,
        max_body_bytes: int,
        body_timeout_s: float,
    ) -> None:
        self.forward = forward
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # the server has no websocket routes
            await send({"type": "websocket.close", "code": 1000})
            return
        request = await read_request(
            scope, receive, max_body_bytes=self.max_body_bytes, body_timeout_s=self.body_timeout_s
        )
        if request is None:
            return
        call = self.forward(request)
        try:
            await _relay(call, send)
        except asyncio.CancelledError:  # the client left: Serve's proxy cancels the request
            call.cancel()
            raise


async def _relay(call: Forward, send: Send) -> None:
    started: Message | None = None
    try:
        async for batch in call:
            for message in batch:
                if message["type"] == "http.response.start":
                    started = message
                await send(message)
    except Exception as exc:  # the replica died or Serve refused it: what the client sees
        log.warning("forwarded request failed: %r", exc)
        error = ServiceUnavailableError(
            "The replica serving this request failed; try again.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
        if started is None:
            await error.response()({"type": "http"}, _no_body, send)
        elif _is_event_stream(started):
            event = encode_event(error.body())
            await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": DONE_EVENT})
        else:
            await send({"type": "http.response.body", "body": b""})


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def _is_event_stream(start: Message) -> bool:
    return any(
        k.lower() == b"content-type" and v.startswith(b"text/event-stream")
        for k, v in start.get("headers", [])
    )


async def _lifespan(receive: Receive, send: Send) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            message = await receive()
            kind = message["type"].removeprefix("lifespan.")  # startup, shutdown
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
