"""Errors in OpenAI's shape, and the handlers that make every failure one.

Every non-2xx answer of the server has the body::

    {"error": {"message": str, "type": str, "param": str | None, "code": str | None}}

The tree (the HTTP status is the class attribute ``status_code``)::

    APIError                    500 server_error
    ├── BadRequestError         400 invalid_request_error   (validation, malformed JSON, ...)
    │   └── ContextLengthError  400 code=context_length_exceeded
    ├── AuthenticationError     401 code=invalid_api_key
    ├── NotFoundError           404 (unknown route, or code=model_not_found)
    ├── MethodNotAllowedError   405
    ├── RequestTimeoutError     408 code=request_timeout (the body did not arrive in time)
    ├── PayloadTooLargeError    413 code=request_too_large
    ├── OverloadedError         429 code=rate_limit_exceeded, Retry-After header
    └── ServiceUnavailableError 503 (engine not ready, shutting down), Retry-After when known

Handlers registered by ``install_error_handlers`` turn ``APIError``, Starlette's
``HTTPException`` (unknown route, wrong method) and FastAPI's ``RequestValidationError`` into
that shape, so a client never sees FastAPI's ``{"detail": ...}`` or a traceback. Unexpected
exceptions are caught by the outermost middleware (``middleware.RequestContextMiddleware``),
logged, and answered with a 500 in the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException


class APIError(Exception):
    """An error the client should see, with the status and OpenAI fields to send."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, param=self.param, code=self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status_code, headers=self.headers)


class BadRequestError(APIError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthError(BadRequestError):
    default_code = "context_length_exceeded"


class AuthenticationError(APIError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class NotFoundError(APIError):
    status_code = 404
    error_type = "invalid_request_error"


class MethodNotAllowedError(APIError):
    status_code = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"


class RequestTimeoutError(APIError):
    status_code = 408
    error_type = "invalid_request_error"
    default_code = "request_timeout"

    def __init__(self, message: str) -> None:
        # the rest of the body may still come: the connection cannot carry another request
        super().__init__(message, headers={"Connection": "close"})


class PayloadTooLargeError(APIError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class OverloadedError(APIError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float) -> None:
        # Retry-After is whole seconds (RFC 9110 section 10.2.3); round up so a client never
        # comes back before the hint.
        seconds = max(1, math.ceil(retry_after))
        super().__init__(message, headers={"Retry-After": str(seconds)})
        self.retry_after = retry_after


class ServiceUnavailableError(APIError):
    status_code = 503
    error_type = "service_unavailable_error"


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The OpenAI error body. Also used for the SSE error event."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def validation_error(
    exc: ValidationError | RequestValidationError, data: Any = None
) -> BadRequestError:
    """A 400 naming the offending fields, e.g. ``temperature: Input should be ...``.

    Errors from the members of a union (``stop`` is a string or a list) share one field
    name and are joined with "or". With the request body (``data``), the member names of
    tagged unions are left out too: ``tools[0].function.name``, not
    ``tools[0].function.function.name``.
    """
    errors: Sequence[Any] = exc.errors()
    if data is None and isinstance(exc, RequestValidationError):
        data = exc.body
    by_field: dict[str, list[str]] = {}
    for err in errors:
        loc = list(err.get("loc", ()))
        if isinstance(exc, RequestValidationError) and loc:
            loc = loc[1:]  # FastAPI's location: ('query', 'ranks') -> ('ranks',)
        msgs = by_field.setdefault(_format_loc(loc, data), [])
        msg = str(err.get("msg", "invalid value"))
        if msg not in msgs:
            msgs.append(msg)
    if not by_field:
        return BadRequestError("Invalid request body.")
    parts = [
        f"{loc}: {' or '.join(msgs)}" if loc else " or ".join(msgs)
        for loc, msgs in list(by_field.items())[:5]
    ]
    more = len(by_field) - len(parts)
    message = "; ".join(parts) + (f" (and {more} more fields)" if more > 0 else "")
    return BadRequestError(message, param=next(iter(by_field)) or None)


def _is_union_tag(part: str) -> bool:
    """pydantic names the union member in the location (``'str'``, ``'list[int]'``)."""
    return (
        part in ("str", "int", "float", "bool", "none")
        or "[" in part
        or part.startswith(("constrained-", "function-", "lax-", "strict-"))
    )


def _is_type_tag(node: Any, part: str) -> bool:
    """A tagged union (``sdk.types._union``) names its member after the value's ``type``, or
    "other" for a type it does not know."""
    return isinstance(node, dict) and part in (node.get("type"), "other")


def _format_loc(loc: Sequence[Any], data: Any = None) -> str:
    """('messages', 0, 'role') -> 'messages[0].role'. ``data`` (the body) is walked along to
    recognise the member names of tagged unions."""
    out = ""
    node, tagged = data, False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            tagged = False
        elif _is_union_tag(str(part)) or (not tagged and _is_type_tag(node, str(part))):
            tagged = True  # one member name per value: what follows is a field
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
            tagged = False
    return out


async def _api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return exc.response()


async def _http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        err: APIError = NotFoundError(f"Invalid URL ({request.method} {request.url.path})")
    elif exc.status_code == 405:
        err = MethodNotAllowedError(
            f"Method {request.method} is not allowed for {request.url.path}"
        )
    else:
        # Other HTTPExceptions (only raised by Starlette internals) keep their status.
        error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
        response = JSONResponse(
            error_body(str(exc.detail), error_type), status_code=exc.status_code
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    response = err.response()
    if exc.headers:
        response.headers.update(exc.headers)  # e.g. Allow for 405
    return response


async def _request_validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_error(exc).response()


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn known exceptions into OpenAI-shaped responses."""
    app.add_exception_handler(APIError, _api_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _request_validation_handler)
