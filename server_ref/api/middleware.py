"""Pure ASGI middlewares: request id + access log + last-resort 500, and the body's limits.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming responses and client disconnects pass
through untouched.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server_ref.api.errors import (
    APIError,
    BadRequestError,
    PayloadTooLargeError,
    RequestTimeoutError,
)

access_logger = logging.getLogger("server_ref.access")
error_logger = logging.getLogger("server_ref.api")

REQUEST_ID_HEADER = "x-request-id"
# A client-supplied id is echoed only if it is short and printable (it ends up in logs).
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away"; only ever logged


def request_id_of(scope: Scope) -> str:
    """The id assigned by ``RequestContextMiddleware`` (``""`` outside of it)."""
    state = scope.get("state") or {}
    return str(state.get("request_id", ""))


class RequestContextMiddleware:
    """Assign/echo ``x-request-id``, log one access line per request, never leak a traceback.

    An exception that reaches this middleware is a bug: it is logged with its traceback and
    the client gets a 500 in OpenAI's shape (if the response has not started yet).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            status = status or CLIENT_CLOSED_REQUEST
        except Exception:
            error_logger.exception(
                "unhandled error in %s %s (request_id=%s)",
                scope.get("method"),
                scope.get("path"),
                request_id,
            )
            if status == 0:
                error = APIError(f"Internal server error (request id {request_id}).")
                await error.response()(scope, receive, send_with_id)
        finally:
            access_logger.info(
                "%s %s %d %.1fms request_id=%s",
                scope.get("method"),
                scope.get("path"),
                status or CLIENT_CLOSED_REQUEST,
                (time.perf_counter() - start) * 1000.0,
                request_id,
            )


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SAFE_REQUEST_ID.match(text) else None
    return None


class BodyLimitMiddleware:
    """413 for bodies over ``max_body_bytes``, 408 for one not complete ``body_timeout_s``
    after the request started (a client that stops sending would otherwise hold its
    connection and its handler forever: uvicorn has no body timeout).

    The size is checked twice: up front from ``Content-Length``, and while the body streams in
    (chunked uploads have no length). Both checks on the streamed body raise out of
    ``receive``; the endpoint is reading the body at that moment, so the exception handler
    answers before any response started. Once the body is complete, ``receive`` (which then
    only waits for a disconnect) is left alone.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float = 60.0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    error: APIError = BadRequestError("Invalid Content-Length header.")
                    await error.response()(scope, receive, send)
                    return
                if length > self.max_body_bytes:
                    await self._too_large().response()(scope, receive, send)
                    return
        received = 0
        complete = False
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s

        async def bounded_receive() -> Message:
            nonlocal received, complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeoutError(
                    f"The request body did not arrive within {self.body_timeout_s:g} seconds."
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise self._too_large()
                complete = not message.get("more_body", False)
            else:
                complete = True  # http.disconnect
            return message

        await self.app(scope, bounded_receive, send)

    def _too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"Request body is larger than the limit of {self.max_body_bytes} bytes."
        )
