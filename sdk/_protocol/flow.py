"""The call flow: one generator per call makes every decision; the clients only do the I/O.

Strategy (httpx's auth flows, h11's "bring your own I/O"): a flow *yields actions* and
*receives their results*:

    action                 the driver does                       and sends back
    Send(request)          http.send(request, stream=True)       Sent(response, byte iterator)
    ReadBody(response)     response.read()                       bytes
    ReadChunk(resp, it)    next(it, None)                        bytes, or None at EOF
    Close(response)        response.close()                      None
    Sleep(seconds)         sleep(seconds)                        None

(The action classes live in ``actions``, which the clients import without the wire models.)
When an action fails, the driver throws the (already mapped) ``APIError`` into the flow at
the ``yield``, exactly where a blocking call would have raised. The flow returns the parsed
object (or a ``StreamStart``) or raises. ``Client`` drives it with plain calls and
``AsyncClient`` with ``await``; the retry loop, status handling, response closing and the
"retry a stream only before its first event" rule exist once, here (``resume`` is the one
exception, for a stream whose output is reproducible).

Retry decisions come from a tenacity ``Retrying`` used as a state machine (``iter``):
``DoAttempt`` -> run one attempt, ``DoSleep`` -> yield ``Sleep``, anything else is the result.

A stream that breaks after its first chunks is opened again when its output is reproducible
(``resume``: same idempotency key, the same retry budget, the replay checked against what was
delivered); ``StreamStart.resume`` carries what that takes to ``stream.read_flow``.

``AttemptHooks`` (optional) run around every attempt: ``before_attempt`` may yield ``Sleep``s
(the client-side rate limiter waits there), ``after_attempt`` sees the result or the error.

A stream outlives its flow: ``StreamStart.observers`` (``StreamObserver``) are told of every
chunk (by ``stream.read_flow``) and of the stream's end, once (by the stream that owns the
response), so layers above the core can finish their bookkeeping then: the router counts the
stream as outstanding until it ends, tracing ends the call's span.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar, cast

import httpx
import pydantic
import tenacity

from .._exceptions import APIError, APIResponseValidationError, APIStatusError, status_error_class
from ..types import APIObject, ResponseInfo
from .accumulate import Accumulator
from .actions import Action, Close, Flow, ReadBody, ReadChunk, Send, Sent, Sleep
from .options import ClientConfig, RequestOptions, RetryPolicy
from .request import APICall, build_request
from .resume import Resume, resumes
from .retry import new_retrying, parse_retry_after
from .stream import ChunkDecoder

__all__ = [
    "Action",
    "AttemptHooks",
    "Close",
    "Flow",
    "ReadBody",
    "ReadChunk",
    "Send",
    "Sent",
    "Sleep",
    "StreamObserver",
    "StreamStart",
    "call_flow",
    "make_status_error",
    "parse_response",
    "response_info",
    "stream_flow",
]

T = TypeVar("T", bound=APIObject)
R = TypeVar("R")
C = TypeVar("C")  # the driver's byte iterator (sync or async); opaque to the flow


class AttemptHooks(Protocol):
    """Called around each attempt of a call (``sdk._policies.ratelimit`` implements it)."""

    def before_attempt(self) -> Flow[None]: ...

    def after_attempt(self, result: object, error: APIError | None) -> None: ...


class StreamObserver(Protocol):
    """Told about an opened stream until it ends (see the module docstring): ``chunk`` sees
    each chunk after the accumulator took it and before the caller does; ``end`` is called
    once, with ``None`` when the stream was read to ``[DONE]`` or closed early, else with the
    error that broke it."""

    def chunk(self, chunk: Any) -> None: ...

    def end(self, error: BaseException | None) -> None: ...


@dataclass(frozen=True)
class StreamStart(Generic[T, C]):
    """A stream that delivered its first chunks (or ``[DONE]``); the rest is the caller's
    (``stream.read_flow``), folded into ``accumulator`` as it is read."""

    response: httpx.Response
    chunks: C
    decoder: ChunkDecoder[T]
    first: list[T]
    info: ResponseInfo
    accumulator: Accumulator[T, Any]
    observers: tuple[StreamObserver, ...] = ()
    resume: Resume | None = None  # how to open it again if it breaks (``resume``)

    def observed_by(self, observer: StreamObserver) -> StreamStart[T, C]:
        """This start with one more observer."""
        return replace(self, observers=(*self.observers, observer))


def call_flow(
    config: ClientConfig,
    call: APICall[T],
    options: RequestOptions,
    clock: Callable[[], float] = time.time,
    hooks: AttemptHooks | None = None,
) -> Flow[T]:
    """Send ``call`` with retries and return the parsed response object."""

    def attempt(sent: Sent[Any], retries: int) -> Flow[T]:
        response = sent.response
        content = yield ReadBody(response)
        if response.status_code >= 400:
            raise make_status_error(response, content, clock())
        return parse_response(call, response, content, retries)

    return _retrying(config, call, options, attempt, hooks)


def stream_flow(
    config: ClientConfig,
    call: APICall[T],
    options: RequestOptions,
    clock: Callable[[], float] = time.time,
    hooks: AttemptHooks | None = None,
) -> Flow[StreamStart[T, Any]]:
    """Open a stream with retries, up to its first event. Failures after that are final,
    unless the output is reproducible: then ``read_flow`` may resume it (``resume``)."""

    accumulator = call.accumulator
    if accumulator is None:
        raise TypeError(f"{call.describe} is not a streaming call")

    def attempt(sent: Sent[Any], retries: int) -> Flow[StreamStart[T, Any]]:
        response = sent.response
        if response.status_code >= 400:
            content = yield ReadBody(response)
            raise make_status_error(response, content, clock())
        media = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media not in ("", "text/event-stream"):
            content = yield ReadBody(response)
            text = content.decode("utf-8", "replace")
            raise APIResponseValidationError(
                f"expected an event stream from {call.describe}, got {media}: {text[:200]!r}",
                response=response,
                body=text,
            )
        decoder = ChunkDecoder(call.parse, response)
        first: list[T] = []
        while not (first or decoder.done):
            data = yield ReadChunk(response, sent.chunks)
            if data is None:
                decoder.finish()  # raises: the stream ended before its first event
            else:
                first = decoder.feed(data)
        info = response_info(response, retries)
        return StreamStart(response, sent.chunks, decoder, first, info, accumulator())

    policy = _policy(config, options)
    if not resumes(policy, call.body, options):
        return _retrying(config, call, options, attempt, hooks)
    # the replay of a broken stream is the same call: it keeps the first attempt's key
    options = {**options, "idempotency_key": options.get("idempotency_key") or _new_key()}

    def reopen(_: APIError, retries_used: int, retries_left: int) -> Flow[StreamStart[T, Any]]:
        again: RequestOptions = {**options, "max_retries": retries_left}
        return _retrying(config, call, again, attempt, hooks, retries_used)

    def resumable() -> Flow[StreamStart[T, Any]]:
        start = yield from _retrying(config, call, options, attempt, hooks)
        return replace(start, resume=Resume(policy, reopen, start.info.retries_taken))

    return resumable()


def _policy(config: ClientConfig, options: RequestOptions) -> RetryPolicy:
    if "max_retries" in options:
        return replace(config.retry, max_retries=options["max_retries"])
    return config.retry


def _new_key() -> str:
    return f"llm-sdk-{uuid.uuid4().hex}"


def _retrying(
    config: ClientConfig,
    call: APICall[Any],
    options: RequestOptions,
    attempt: Callable[[Sent[Any], int], Flow[R]],
    hooks: AttemptHooks | None = None,
    retries_before: int = 0,
) -> Flow[R]:
    """Attempts of ``call`` until one succeeds or the policy gives up; ``retries_before``
    counts the retries a resumed stream already took (``X-Retry-Count`` goes on from there)."""
    policy = _policy(config, options)
    # One key for all attempts of this call, so a server that saw the first attempt can
    # recognise the retry. GET is idempotent by definition and gets none.
    key = options.get("idempotency_key")
    if key is None and call.method != "GET":
        key = _new_key()
    retrying = new_retrying(policy, call.describe)
    retrying.begin()  # resets its statistics, as Retrying.__call__ does
    state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
    while True:
        action = retrying.iter(state)
        if isinstance(action, tenacity.DoAttempt):
            if hooks is not None:
                yield from hooks.before_attempt()
            retries = retries_before + state.attempt_number - 1
            request = build_request(
                config, call, options, retries_taken=retries, idempotency_key=key
            )
            try:
                sent = yield Send(request)
                try:
                    result = yield from attempt(sent, retries)
                except APIError:
                    yield Close(sent.response)  # free the connection before any retry sleep
                    raise
            except APIError as exc:
                if hooks is not None:
                    hooks.after_attempt(None, exc)
                state.set_exception((type(exc), exc, exc.__traceback__))
            else:
                if hooks is not None:
                    hooks.after_attempt(result, None)
                state.set_result(result)
        elif isinstance(action, tenacity.DoSleep):
            state.prepare_for_next_attempt()
            yield Sleep(float(action))
        else:
            return cast(R, action)


def response_info(response: httpx.Response, retries_taken: int) -> ResponseInfo:
    return ResponseInfo(
        status_code=response.status_code,
        headers=response.headers,
        request_id=response.headers.get("x-request-id"),
        retries_taken=retries_taken,
    )


def parse_response(call: APICall[T], response: httpx.Response, content: bytes, retries: int) -> T:
    """Validate a 2xx body into the call's model, or raise ``APIResponseValidationError``."""
    try:
        data = json.loads(content)
    except ValueError:
        text = content.decode("utf-8", "replace")
        media = response.headers.get("content-type", "no content type")
        raise APIResponseValidationError(
            f"expected JSON from {call.describe}, got {media}: {text[:200]!r}",
            response=response,
            body=text,
        ) from None
    try:
        result = call.parse(data)
    except pydantic.ValidationError as exc:
        raise APIResponseValidationError(
            f"unexpected response shape from {call.describe}: {exc}", response=response, body=data
        ) from None
    result._response_info = response_info(response, retries)
    return result


def make_status_error(response: httpx.Response, content: bytes, now: float) -> APIStatusError:
    """The typed error for a response with status >= 400."""
    try:
        body: object = json.loads(content)
    except ValueError:
        body = content.decode("utf-8", "replace")
    status = response.status_code
    message = _error_message(body) or response.reason_phrase
    return status_error_class(status)(
        f"Error code: {status} - {message}",
        response=response,
        status_code=status,
        body=body,
        retry_after=parse_retry_after(response.headers, now),
    )


def _error_message(body: object) -> str:
    # OpenAI/vLLM nest {"error": {"message"}}; TGI and vLLM's 401 send {"error": "text"};
    # FastAPI sends {"detail": ...}; a proxy sends an HTML page.
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            error = error.get("message") or error.get("detail")
        if error:
            return str(error)[:1000]
    text = body if isinstance(body, str) else json.dumps(body)
    return text.strip()[:500]
