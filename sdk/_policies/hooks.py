"""Hooks: watch every call a client makes, without OpenTelemetry or with it (``sdk.otel``).

``Client(hooks=...)`` takes any number of ``CallHooks``: objects whose ``start_call`` is told
about each call (``CallInfo``) and returns a ``CallObserver`` for it. ``observed_flow`` wraps
the call's flow (a flow transformer, sans-I/O like the rest) and tells that observer what the
driver does for it:

* ``request`` — before each HTTP request of the call is sent, retries and failovers included
  (also the tokenizer fetches a token budget makes); it may add headers (``traceparent``);
* ``response`` — when a response's status and headers have arrived;
* ``retry`` — when an attempt failed and another one is sent (on the same endpoint, or after
  a router's failover on another, or to resume a broken stream), with the failed request
  and the reason;
* ``chunk`` — each chunk of a stream, as the caller reads it;
* ``end`` — once, when the call is over: its result (a stream's result is what it delivered,
  accumulated), or the error that ended it. A stream's call ends when the stream does.

``Hooks`` adapts plain callables to this, for apps that only want to log or count. An
exception raised inside a hook is logged (logger ``"sdk"``) and never changes the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx

if TYPE_CHECKING:
    from sdk._exceptions import APIError
    from sdk._protocol.actions import Flow
    from sdk._protocol.flow import StreamStart
    from sdk._protocol.request import APICall

__all__ = ["CallHooks", "CallInfo", "CallObserver", "Hooks", "observed_flow"]

logger = logging.getLogger("sdk")

R = TypeVar("R")

# GenAI semantic conventions' gen_ai.operation.name of each endpoint
_OPERATIONS = {
    "/chat/completions": "chat",
    "/completions": "text_completion",
    "/embeddings": "embeddings",
}


@dataclass
class CallInfo:
    """What hooks are told about a call.

    ``operation``: ``"chat"``, ``"text_completion"`` or ``"embeddings"`` (the GenAI semantic
    conventions' names), ``None`` for the other endpoints. ``model``: as the caller named it
    (a router's public name). ``params``: the request body as validated (``{}`` for a GET).
    ``attempts``: the requests of this call sent so far, retries and failovers included.
    """

    method: str
    path: str
    operation: str | None
    model: str | None
    stream: bool
    params: Mapping[str, Any]
    attempts: int = 0

    @classmethod
    def of(cls, call: APICall[Any]) -> CallInfo:
        body = call.body or {}
        model = body.get("model")
        return cls(
            method=call.method,
            path=call.path,
            operation=_OPERATIONS.get(call.path),
            model=model if isinstance(model, str) else None,
            stream=call.stream,
            params=body,
        )

    def is_attempt(self, request: httpx.Request) -> bool:
        """Is ``request`` an attempt of this call (not a tokenizer fetch made for it)?"""
        return request.method == self.method and request.url.path.endswith(self.path)


class CallObserver(Protocol):
    """Told about one call as it happens (see the module docstring)."""

    def request(self, request: httpx.Request) -> None: ...

    def response(self, response: httpx.Response) -> None: ...

    def retry(self, failed: httpx.Request, reason: str, request: httpx.Request) -> None: ...

    def chunk(self, chunk: Any) -> None: ...

    def end(self, result: object | None, error: BaseException | None) -> None: ...


class CallHooks(Protocol):
    """What ``Client(hooks=...)`` takes: ``start_call`` returns the call's observer, or
    ``None`` to leave it alone."""

    def start_call(self, call: CallInfo) -> CallObserver | None: ...


@dataclass(frozen=True)
class Hooks:
    """Plain callbacks around every call: logging, metrics, headers, without OpenTelemetry.

    >>> def log(request: httpx.Request, call: CallInfo) -> None:
    ...     print(call.operation, call.model, request.url, call.attempts)
    >>> client = Client(hooks=Hooks(on_request=log))  # doctest: +SKIP

    ``on_request(request, call)`` runs before each request is sent (it may set headers),
    ``on_response(response, call)`` when its status and headers arrived, ``on_retry(failed,
    reason, call)`` when a failed attempt is followed by another, ``on_end(call, result,
    error)`` once when the call is over (for a stream, when it ends or is closed).
    """

    on_request: Callable[[httpx.Request, CallInfo], None] | None = None
    on_response: Callable[[httpx.Response, CallInfo], None] | None = None
    on_retry: Callable[[httpx.Request, str, CallInfo], None] | None = None
    on_end: Callable[[CallInfo, object | None, BaseException | None], None] | None = None

    def start_call(self, call: CallInfo) -> CallObserver:
        return _PlainObserver(self, call)


@dataclass(frozen=True)
class _PlainObserver:
    hooks: Hooks
    call: CallInfo

    def request(self, request: httpx.Request) -> None:
        if self.hooks.on_request is not None:
            self.hooks.on_request(request, self.call)

    def response(self, response: httpx.Response) -> None:
        if self.hooks.on_response is not None:
            self.hooks.on_response(response, self.call)

    def retry(self, failed: httpx.Request, reason: str, request: httpx.Request) -> None:
        if self.hooks.on_retry is not None:
            self.hooks.on_retry(failed, reason, self.call)

    def chunk(self, chunk: Any) -> None:
        pass

    def end(self, result: object | None, error: BaseException | None) -> None:
        if self.hooks.on_end is not None:
            self.hooks.on_end(self.call, result, error)


@dataclass
class _Observers:
    """The observers of one call, each shielded from the others' exceptions."""

    each: list[CallObserver]
    call: CallInfo
    attempt: httpx.Request | None = None  # the attempt in flight
    reason: str | None = None  # why it failed, once known
    awaiting: bool = field(default=False)  # is the next Sent the answer to ``attempt``?

    def notify(self, method: str, *args: Any) -> None:
        for observer in self.each:
            try:
                getattr(observer, method)(*args)
            except Exception:
                logger.exception(
                    "a hook failed in %s of %s %s", method, self.call.method, self.call.path
                )

    def sending(self, request: httpx.Request) -> None:
        self.awaiting = self.call.is_attempt(request)
        if self.awaiting:
            if self.attempt is not None:  # flows only send an attempt again after a failure
                self.notify("retry", self.attempt, self.reason or "_OTHER", request)
            self.attempt, self.reason = request, None
            self.call.attempts += 1
        self.notify("request", request)

    def answered(self, reply: object) -> None:
        from sdk._exceptions import status_error_class
        from sdk._protocol.actions import Sent

        if isinstance(reply, Sent):
            status = reply.response.status_code
            if self.awaiting and status >= 400:
                self.reason = status_error_class(status).__name__
            self.awaiting = False
            self.notify("response", reply.response)

    def failed(self, error: BaseException) -> None:
        if self.attempt is not None and self.reason is None:
            self.reason = type(error).__name__


class _StreamEnd:
    """Forwards a stream's chunks and end to the call's observers (a ``StreamObserver``)."""

    def __init__(self, observers: _Observers, result: Callable[[], object]) -> None:
        self._observers = observers
        self._result = result

    def chunk(self, chunk: Any) -> None:
        self._observers.notify("chunk", chunk)

    def end(self, error: BaseException | None) -> None:
        self._observers.notify("end", self._result(), error)


def observed_flow(flow: Flow[R], hooks: tuple[CallHooks, ...], call: CallInfo) -> Flow[R]:
    """``flow``, with ``hooks`` told what happens to it (see the module docstring)."""
    from sdk._protocol.flow import StreamStart

    observers = _Observers([], call)
    for hook in hooks:
        try:
            observer = hook.start_call(call)
        except Exception:
            logger.exception("a hook failed to start observing %s %s", call.method, call.path)
            continue
        if observer is not None:
            observers.each.append(observer)
    try:
        result = yield from _watched(flow, observers)
    except BaseException as exc:
        observers.notify("end", None, exc)
        raise
    if isinstance(result, StreamStart):
        start = _resumes_watched(result, observers)
        return start.observed_by(_StreamEnd(observers, start.accumulator.result))  # type: ignore[return-value]
    observers.notify("end", result, None)
    return result


def _watched(flow: Flow[R], observers: _Observers) -> Flow[R]:
    """``flow``'s actions passed on, and what the driver does with them told to ``observers``."""
    from sdk._exceptions import APIError
    from sdk._protocol.actions import Send

    reply: object = None
    error: APIError | None = None
    try:
        while True:
            try:
                action = flow.send(reply) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            if isinstance(action, Send):
                observers.sending(action.request)
            reply, error = None, None
            try:
                reply = yield action
            except APIError as exc:  # the driver's mapped transport errors
                error = exc
                observers.failed(exc)
            observers.answered(reply)
    except BaseException:
        flow.close()  # abandoned (GeneratorExit) or failed: the inner flow cleans up too
        raise


def _resumes_watched(start: StreamStart[Any, Any], observers: _Observers) -> StreamStart[Any, Any]:
    """``start``, whose resumes (``_protocol.resume``) the observers see as retries, their
    requests passing through the ``request`` hook like every other attempt's."""
    resume = start.resume
    if resume is None:
        return start
    reopen = resume.reopen

    def watched(error: APIError, used: int, left: int) -> Flow[StreamStart[Any, Any]]:
        observers.failed(error)  # the reason the next attempt's ``retry`` names
        return _watched(reopen(error, used, left), observers)

    return replace(start, resume=replace(resume, reopen=watched))
