"""An ASGI app that answers 503 until the model has loaded, then hands over to the real app.

``serve`` binds the port at once and loads (or pulls) the model in the background, so that
``/health`` can say "loading" (503) instead of the port refusing connections, as vLLM and
llama.cpp's server do. Every other path gets the same 503 in OpenAI's error shape, with a
``Retry-After`` header so that retrying clients wait politely.
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


class DeferredApp:
    def __init__(self, retry_after: int = 2) -> None:
        self.app: ASGIApp | None = None
        self.status = "loading the model"
        self._retry_after = retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is not None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = {
            "error": {
                "message": f"The server is not ready: {self.status}. Retry shortly.",
                "type": "service_unavailable",
                "param": None,
                "code": "model_loading",
            }
        }
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"retry-after", str(self._retry_after).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
