"""Server-sent events: ``data: {json}\\n\\n`` ... ``data: [DONE]\\n\\n``.

``SSEResponse`` streams an async iterator of already-encoded events and owns three duties the
plain ``StreamingResponse`` leaves open:

* **Disconnects.** It listens for ``http.disconnect`` while streaming and stops at once, instead
  of noticing only at the next write (which, while the engine is thinking, may be never).
* **Cleanup.** The event iterator is always ``aclose()``-d, so the generator's ``finally``
  (which aborts the engine requests) runs now, not whenever the garbage collector gets to it.
* **Errors.** The response starts only once the first event exists, so a failure before any
  output is an ordinary error response with its real status. After the first byte the status
  line is gone, so an error is sent as one event ``data: {"error": {...}}`` in OpenAI's error
  shape, followed by ``data: [DONE]``, and the stream ends. We follow vLLM in sending
  ``[DONE]`` after the error: the openai client raises on the error event, and simpler clients
  still see a properly terminated stream instead of a truncated one. No keep-alive comment
  lines are sent: some parsers choke on them (a ``: ping`` after an ``id:`` line made
  openai-python raise JSONDecodeError, openai/openai-python#2722; sse-starlette's pings broke
  modelcontextprotocol/python-sdk#1146).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server_ref.api.errors import APIError

logger = logging.getLogger("server_ref.api")

DONE_EVENT = b"data: [DONE]\n\n"
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell nginx-style proxies not to buffer the stream
}


def encode_event(data: Mapping[str, Any] | str) -> bytes:
    """One SSE ``data:`` event. ``data`` is a JSON object or an already-serialized string."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


class SSEResponse(Response):
    """A ``text/event-stream`` response over an async iterator of encoded events.

    The iterator should end with ``DONE_EVENT``; if it raises instead, the error is sent as an
    event (see the module docstring) followed by ``DONE_EVENT``. ``on_close`` runs when the
    response ends for any reason (finished, failed, client gone).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterator[bytes],
        *,
        on_close: Callable[[], Awaitable[None]] | None = None,
        status_code: int = 200,
    ) -> None:
        self.events = events
        self.on_close = on_close
        self.status_code = status_code
        self.background = None
        self.init_headers(SSE_HEADERS)
        self.disconnected = False
        self.started = False  # "200 OK" was sent: an error since then is an event
        self.error: APIError | None = None  # what ended the response, if it failed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def watch_disconnect() -> None:
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            self.disconnected = True
                            tg.cancel_scope.cancel()
                            return

                tg.start_soon(watch_disconnect)
                try:
                    await self._stream(scope, receive, send)
                except OSError:
                    # The server reports a write to a closed connection this way (ASGI 2.4).
                    self.disconnected = True
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                # An events generator that never started skips its own ``finally`` on
                # aclose(), hence ``on_close`` for cleanup that must happen regardless.
                await _aclose(self.events)
                if self.on_close is not None:
                    await self.on_close()

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Wait for the first event before committing to "200 OK": a failure that happens
        # before anything was produced (engine dead, first step failed) still gets its
        # real status and a plain JSON error body.
        try:
            first: bytes | None = await self.events.__anext__()
        except StopAsyncIteration:
            first = None
        except APIError as exc:
            self.error = exc
            await exc.response()(scope, receive, send)
            return
        except Exception:
            logger.exception("error before a stream started")
            self.error = APIError("Internal server error.")
            await self.error.response()(scope, receive, send)
            return
        self.started = True
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        try:
            if first is not None:
                await send({"type": "http.response.body", "body": first, "more_body": True})
                async for event in self.events:
                    await send({"type": "http.response.body", "body": event, "more_body": True})
        except APIError as exc:
            self.error = exc
            await self._send_error(send, exc)
        except Exception:
            logger.exception("error while streaming a response")
            self.error = APIError("Internal server error while streaming.")
            await self._send_error(send, self.error)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _send_error(send: Send, exc: APIError) -> None:
        body = encode_event(exc.body()) + DONE_EVENT
        await send({"type": "http.response.body", "body": body, "more_body": True})


async def _aclose(iterator: AsyncIterator[bytes]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
