"""Every error the SDK raises.

    SDKError
    ├── InvalidRequestParamsError (also ValueError)  bad call arguments; raised before any HTTP
    ├── TokenizerError (also ValueError)              sdk.tokens: bad vocabulary, rank file, sha256
    │   └── ChatTemplateError                         a chat template failed to compile or render
    ├── TokenBudgetError (also ValueError)            a local token check refused the call; not sent
    │   ├── ContextWindowExceededError                prompt + max_tokens exceed the context window
    │   └── TokenRateLimitError                       one call needs more than tokens_per_minute
    ├── StructuredOutputError                         parse(): the reply is not the requested type
    │   ├── LengthFinishReasonError                   the reply was cut off by the token limit
    │   ├── ContentFilterFinishReasonError            a content filter stopped the reply
    │   └── OutputParseError (also ValueError)        not JSON, or JSON the type does not accept
    ├── ToolLoopLimitError                            run_tools: still calling tools at max_rounds
    ├── RouterError (also ValueError)                 a Router cannot place a call; nothing was sent
    │   ├── RouterConfigError                         built wrong: no endpoints, duplicate names...
    │   └── NoEndpointError                           no endpoint serves the call's model
    └── APIError                                      something went wrong talking to the server
        ├── APIConnectionError                        no complete answer: refused, reset, cut off
        │   └── APITimeoutError                       a connect/read/write/pool timeout fired
        ├── APIResponseValidationError                a 2xx answer that is not the JSON we expect
        └── APIStatusError                            the server answered with status >= 400
            ├── BadRequestError               400
            ├── AuthenticationError           401
            ├── PermissionDeniedError         403
            ├── NotFoundError                 404
            ├── ConflictError                 409
            ├── UnprocessableEntityError      422
            ├── RateLimitError                429
            └── InternalServerError           >= 500

``StructuredOutputError``s carry the ``completion`` they were raised for (a refusal is not
an error: it sets ``message.refusal`` and leaves ``parsed`` empty); ``OutputParseError`` also
carries the raw ``text``. ``ToolLoopLimitError`` carries the conversation so far.

A ``Router`` raises ``RouterConfigError`` when it is built (or copied with ``with_options``)
and ``NoEndpointError`` when a call is made, in both cases before any request goes out.

``TokenizerError`` and ``ChatTemplateError`` are defined in ``sdk.tokens.errors`` (the server
raises them too); the token-budget errors carry the counts (``prompt_tokens``, ``max_tokens``,
``context_length``) that made the call not fit.

Errors carry data, not just text: a status error has ``status_code``, ``request_id`` (from
``x-request-id``), the parsed ``body``, ``retry_after`` (seconds, from ``retry-after-ms`` /
``Retry-After``) and the response ``headers``. A stream that fails after it started (a
``data: {"error": ...}`` event) raises the same classes, chosen from the error's ``code`` or
``type``.

httpx exceptions are translated in one place, ``map_transport_errors``, at the transport
boundary; nothing else in the SDK catches them. No message ever contains the API key:
messages are built from status, URL path and server text only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:  # the clients import this module; the wire models load on the first call
    from .types import ChatCompletion

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ContentFilterFinishReasonError",
    "ContextWindowExceededError",
    "InternalServerError",
    "InvalidRequestParamsError",
    "LengthFinishReasonError",
    "NoEndpointError",
    "NotFoundError",
    "OutputParseError",
    "PermissionDeniedError",
    "RateLimitError",
    "RouterConfigError",
    "RouterError",
    "SDKError",
    "StructuredOutputError",
    "TokenBudgetError",
    "TokenRateLimitError",
    "ToolLoopLimitError",
    "UnprocessableEntityError",
    "map_transport_errors",
    "status_error_class",
]


class SDKError(Exception):
    """Base class of every exception raised by this package."""


class InvalidRequestParamsError(SDKError, ValueError):
    """Call arguments failed validation; nothing was sent.

    >>> client.chat.completions.create(messages="hi")  # doctest: +SKIP
    InvalidRequestParamsError: invalid parameters for POST /chat/completions: ...
    """

    def __init__(self, message: str, *, errors: list[Any] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []  # pydantic's error list, for programmatic inspection


class TokenBudgetError(SDKError, ValueError):
    """A local token check (``TokenBudget`` or ``RateLimiter``) refused the call; nothing was sent.

    ``exact`` is false when the counts come from an estimate (a hosted model's public
    encoding, or a heuristic), not from the model's own tokenizer.
    """

    def __init__(
        self,
        message: str,
        *,
        prompt_tokens: int | None = None,
        max_tokens: int | None = None,
        context_length: int | None = None,
        exact: bool = True,
    ) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.context_length = context_length
        self.exact = exact


class ContextWindowExceededError(TokenBudgetError):
    """The prompt plus ``max_tokens`` does not fit the model's context window (and the budget's
    trim policy could not make it fit); no request was sent.

    >>> try:
    ...     client.chat.completions.create(model=m, messages=long, max_tokens=512)
    ... except ContextWindowExceededError as exc:  # doctest: +SKIP
    ...     print(exc.prompt_tokens, exc.max_tokens, exc.context_length)
    """


class TokenRateLimitError(TokenBudgetError):
    """One call needs more tokens than the rate limiter's ``tokens_per_minute``: it could never
    be admitted, so it fails at once instead of waiting forever."""


class StructuredOutputError(SDKError):
    """``parse()`` got a reply that cannot become the requested type; ``completion`` is it."""

    def __init__(self, message: str, *, completion: ChatCompletion) -> None:
        super().__init__(message)
        self.completion = completion


class LengthFinishReasonError(StructuredOutputError):
    """The reply stopped at ``max_tokens`` / the context window, so its JSON is incomplete.

    >>> try:
    ...     client.chat.completions.parse(..., response_format=Event, max_tokens=5)
    ... except LengthFinishReasonError as exc:  # doctest: +SKIP
    ...     print(exc.completion.usage)
    """

    def __init__(self, *, completion: ChatCompletion) -> None:
        usage = completion.usage
        super().__init__(
            "could not parse the reply: it was cut off by the token limit "
            f"(finish_reason='length'; usage: {usage!r}); raise max_tokens",
            completion=completion,
        )


class ContentFilterFinishReasonError(StructuredOutputError):
    """The service's content filter stopped the reply (``finish_reason="content_filter"``)."""

    def __init__(self, *, completion: ChatCompletion) -> None:
        super().__init__(
            "could not parse the reply: the service's content filter stopped it "
            "(finish_reason='content_filter')",
            completion=completion,
        )


class OutputParseError(StructuredOutputError, ValueError):
    """The reply (or a tool call's arguments) is not JSON, or not JSON the type accepts.

    ``text`` is the raw reply; ``errors`` pydantic's list of what did not validate.
    """

    def __init__(
        self,
        message: str,
        *,
        completion: ChatCompletion,
        text: str,
        errors: Sequence[Any] = (),
    ) -> None:
        super().__init__(message, completion=completion)
        self.text = text
        self.errors = list(errors)


class ToolLoopLimitError(SDKError):
    """``run_tools`` ran ``max_rounds`` rounds of tool calls and the model still asks for more.

    ``messages`` is the conversation so far (tool results included) and ``completion`` the
    last reply, so a caller can continue it (say, with ``tool_choice="none"``).
    """

    def __init__(self, message: str, *, messages: list[Any], completion: ChatCompletion) -> None:
        super().__init__(message)
        self.messages = messages
        self.completion = completion


class RouterError(SDKError, ValueError):
    """A ``Router`` cannot place a call (see the subclasses); nothing was sent."""


class RouterConfigError(RouterError):
    """A ``Router`` was built wrong: no endpoints, two endpoints with one name, an unknown
    strategy, a weight that is not positive.

    >>> Router([])  # doctest: +SKIP
    RouterConfigError: a Router needs at least one endpoint
    """


class NoEndpointError(RouterError):
    """No endpoint of the ``Router`` serves the model a call asked for.

    >>> router.chat.completions.create(model="nobody-serves-this", messages=msgs)  # doctest: +SKIP
    NoEndpointError: no endpoint serves model 'nobody-serves-this' (a: llama, b: llama, qwen)
    """


class APIError(SDKError):
    """Base of every error that involves the server; ``request`` is the request that failed."""

    def __init__(self, message: str, *, request: httpx.Request | None = None, body: object = None):
        super().__init__(message)
        self.message = message
        self.request = request
        self.body = body


class APIConnectionError(APIError):
    """The server could not be reached, or the connection broke before the answer was complete."""


class APITimeoutError(APIConnectionError):
    """A connect, read, write or pool timeout fired."""


class APIResponseValidationError(APIError):
    """The server answered 2xx, but not with the JSON this endpoint returns (HTML, garbage)."""

    def __init__(self, message: str, *, response: httpx.Response, body: object = None) -> None:
        super().__init__(message, request=response.request, body=body)
        self.response = response
        self.status_code = response.status_code


class APIStatusError(APIError):
    """The server answered with an error status (or sent an error event inside a stream)."""

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        status_code: int,
        body: object = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, request=response.request, body=body)
        self.response = response
        self.status_code = status_code
        self.headers: Mapping[str, str] = response.headers
        self.request_id: str | None = response.headers.get("x-request-id")
        self.retry_after = retry_after
        error = body.get("error") if isinstance(body, dict) else None
        fields: dict[str, Any] = error if isinstance(error, dict) else {}
        self.type: str | None = _str_or_none(fields.get("type"))
        self.code: str | None = _str_or_none(fields.get("code"))
        self.param: str | None = _str_or_none(fields.get("param"))


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


class BadRequestError(APIStatusError):
    """400: the server rejected the request (invalid parameter, prompt longer than the context)."""


class AuthenticationError(APIStatusError):
    """401: missing or wrong API key."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this."""


class NotFoundError(APIStatusError):
    """404: unknown model or endpoint."""


class ConflictError(APIStatusError):
    """409: a conflicting request is in progress (retried by default)."""


class UnprocessableEntityError(APIStatusError):
    """422: well-formed but semantically invalid request."""


class RateLimitError(APIStatusError):
    """429: too many requests or the server is overloaded; see ``retry_after``."""


class InternalServerError(APIStatusError):
    """>= 500: the server failed (retried by default)."""


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The most specific ``APIStatusError`` subclass for a status code."""
    if status_code >= 500:
        return InternalServerError
    return _STATUS_CLASSES.get(status_code, APIStatusError)


@contextmanager
def map_transport_errors(request: httpx.Request | None) -> Iterator[None]:
    """Translate httpx's transport exceptions into the SDK's, keeping the cause chained.

    The only place where httpx exceptions are caught: the clients wrap every send, read and
    close in it, so callers only ever see ``APIError`` subclasses.
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        raise APITimeoutError(f"request timed out ({type(exc).__name__})", request=request) from exc
    except httpx.RequestError as exc:
        message = f"connection error ({type(exc).__name__}): {exc}"
        raise APIConnectionError(message, request=request) from exc
