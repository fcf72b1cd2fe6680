"""The gate in front of the app: 503 while the model loads and while the server drains.

``serve`` binds the port at once and loads (or pulls) the model in the background, so that
``/health`` can say "loading" (503) instead of the port refusing connections, as vLLM and
llama.cpp's server do. When the server is told to stop, the gate drains: the requests it let
through run on, every new one (``/health`` included, so load balancers take the server out
of rotation) gets a 503 and ``Connection: close``. ``/metrics`` still answers, so the drain
can be watched. Every 503 is in OpenAI's error shape, with a ``Retry-After`` header so that
retrying clients wait politely.

The gate counts the requests it let through (``in_flight``): the drain is over when none is
left.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DRAINING = (
    "The server is shutting down: it finishes the requests it is running and accepts no new "
    "ones. Retry on another server, or here once it is back."
)


class DeferredApp:
    """``app`` once loaded; until then, and while draining, a 503 for every HTTP request.

    >>> gate = DeferredApp()
    >>> gate.app = create_app(engine)  # doctest: +SKIP
    >>> gate.start_draining()  # new requests get 503; gate.in_flight counts the rest down
    """

    def __init__(self, retry_after: int = 2) -> None:
        self.app: ASGIApp | None = None
        self.status = "loading the model"
        self.draining = False
        self.in_flight = 0
        self._retry_after = retry_after

    def start_draining(self) -> None:
        self.draining = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self.app is None:
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            if self.app is not None:
                await self.app(scope, receive, send)
            return
        if self.draining and not (self.app is not None and scope["path"] == "/metrics"):
            await self._refuse(send, DRAINING, "draining", close=True)
            return
        if self.app is None:
            message = f"The server is not ready: {self.status}. Retry shortly."
            await self._refuse(send, message, "model_loading", close=False)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, send: Send, message: str, code: str, *, close: bool) -> None:
        body = {
            "error": {
                "message": message,
                "type": "service_unavailable_error",
                "param": None,
                "code": code,
            }
        }
        payload = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"retry-after", str(self._retry_after).encode()),
        ]
        if close:  # a keep-alive client reconnects, maybe to another server
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
