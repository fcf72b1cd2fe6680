"""One span per generation or embeddings request, when the app has a tracer
(``create_app(tracer_provider=)``).

A route decorated with ``@traced("chat")`` gets a SERVER span that:

* continues the caller's trace from its W3C ``traceparent`` header (``otel`` extracts it with
  OpenTelemetry's propagator), so an SDK call's client span is its parent;
* is named ``"{operation} {model}"`` and carries OpenTelemetry's GenAI attributes, the names
  the SDK uses (``sdk/otel/semconv.py``): ``gen_ai.operation.name``, ``gen_ai.request.model``,
  the sampling parameters, ``gen_ai.response.model`` / ``.id`` / ``.finish_reasons``, and
  ``gen_ai.usage.input_tokens`` / ``output_tokens`` from ``Generation.usage()`` (the numbers
  of the response's ``usage``); ``gen_ai.request.id`` is the ``x-request-id``;
* carries the engine's own timings, from the timestamps on its outputs (nothing is timed
  twice), under vLLM's names: ``gen_ai.latency.time_in_queue`` (arrival to first admitted to
  a batch), ``time_in_model_prefill`` (admitted to first token), ``time_in_model_decode``
  (first to last token) and ``time_to_first_token`` (arrival to first token), in seconds.
  With several choices: the first arrival, admission and token, and the last token;
* ends with the response: for a stream, when ``SSEResponse`` closes (finished, failed or
  the client gone); a client that went away sets ``server_ref.client_disconnected``;
* on failure has status ERROR with the error's message, and ``error.type`` its class.

``POST /v1/embeddings`` is traced as ``embeddings``: the model names and
``gen_ai.usage.input_tokens`` (the tokens embedded).

This module imports no OpenTelemetry: the app talks to a ``RequestTracer`` (``otel`` holds the
one over OpenTelemetry, imported only when a tracer provider is given).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from server_ref.api.errors import APIError
from server_ref.api.generation import ChoiceState, Generation
from server_ref.api.middleware import request_id_of
from server_ref.api.sse import SSEResponse
from server_ref.api.state import get_state

Attributes = dict[str, Any]
Route = Callable[[Request], Awaitable[Response]]

CLIENT_DISCONNECTED = "server_ref.client_disconnected"
TIME_IN_QUEUE = "gen_ai.latency.time_in_queue"
TIME_TO_FIRST_TOKEN = "gen_ai.latency.time_to_first_token"
TIME_IN_PREFILL = "gen_ai.latency.time_in_model_prefill"
TIME_IN_DECODE = "gen_ai.latency.time_in_model_decode"


class RequestSpan(Protocol):
    """What a request's span needs of a tracing library."""

    def update_name(self, name: str) -> None: ...

    def set_attributes(self, attributes: Mapping[str, Any]) -> None: ...

    def fail(self, error_type: str, message: str) -> None:
        """Status ERROR with ``message``; ``error.type`` is ``error_type``."""
        ...

    def end(self) -> None: ...


class RequestTracer(Protocol):
    def start_span(
        self, name: str, headers: Mapping[str, str], attributes: Mapping[str, Any]
    ) -> RequestSpan:
        """A SERVER span, a child of the span the ``headers`` propagate (if any)."""
        ...


def traced(operation: str) -> Callable[[Route], Route]:
    """Trace a route's requests as GenAI ``operation`` (``chat``, ``text_completion``...).

    >>> @router.post("/v1/chat/completions")  # doctest: +SKIP
    ... @traced("chat")
    ... async def create_chat_completion(request: Request) -> Response: ...
    """

    def decorate(route: Route) -> Route:
        @functools.wraps(route)
        async def traced_route(request: Request) -> Response:
            tracer = get_state(request).tracer
            if tracer is None:
                return await route(request)
            attributes = {
                "gen_ai.operation.name": operation,
                "gen_ai.request.id": request_id_of(request.scope),
            }
            trace = RequestTrace(
                operation, tracer.start_span(operation, request.headers, attributes)
            )
            request.state.trace = trace
            try:
                response = await route(request)
            except ClientDisconnect:
                trace.end(disconnected=True)
                raise
            except BaseException as exc:
                trace.end(error=exc)
                raise
            if isinstance(response, SSEResponse):
                trace.end_with(response)
            else:
                trace.end(status=response.status_code)
            return response

        return traced_route

    return decorate


def trace_request(request: Request, *, request_model: str | None) -> RequestTrace | None:
    """Name the request's span (if it is traced) after the model it asked for; its trace.

    >>> trace_request(request, request_model=req.model)  # doctest: +SKIP
    """
    trace = getattr(request.state, "trace", None)
    if not isinstance(trace, RequestTrace):
        return None
    if request_model is not None:
        trace.span.update_name(f"{trace.operation} {request_model}")
        trace.span.set_attributes({"gen_ai.request.model": request_model})
    return trace


def trace_generation(request: Request, gen: Generation, *, request_model: str | None) -> None:
    """Tell the request's span (if it is traced) what it generates.

    >>> trace_generation(request, gen, request_model=req.model)  # doctest: +SKIP
    """
    trace = trace_request(request, request_model=request_model)
    if trace is not None:
        trace.generation = gen
        trace.response_model = get_state(request).served_model_name


def trace_embeddings(
    request: Request, *, request_model: str | None, response_model: str, input_tokens: int
) -> None:
    """Tell an embeddings request's span (if it is traced) what it embedded.

    >>> trace_embeddings(req, request_model=m, response_model=m, input_tokens=n)  # doctest: +SKIP
    """
    trace = trace_request(request, request_model=request_model)
    if trace is not None:
        trace.response_model = response_model
        trace.attributes["gen_ai.usage.input_tokens"] = input_tokens


class RequestTrace:
    """The span of one request and what it will say when it ends."""

    def __init__(self, operation: str, span: RequestSpan) -> None:
        self.operation = operation
        self.span = span
        self.generation: Generation | None = None
        self.response_model: str | None = None
        self.attributes: Attributes = {}  # set when the span ends (a route's own)
        self._ended = False

    def end_with(self, response: SSEResponse) -> None:
        """End the span when the stream's response closes (after its own ``on_close``)."""
        inner = response.on_close

        async def on_close() -> None:
            try:
                if inner is not None:
                    await inner()
            finally:
                status = None if response.started else response.error
                self.end(
                    error=response.error,
                    disconnected=response.disconnected,
                    status=response.status_code if status is None else status.status_code,
                )

        response.on_close = on_close

    def end(
        self,
        *,
        error: BaseException | None = None,
        disconnected: bool = False,
        status: int | None = None,
    ) -> None:
        if self._ended:
            return
        self._ended = True
        attributes: Attributes = dict(self.attributes)
        if self.generation is not None:
            attributes.update(generation_attributes(self.generation, self.response_model))
        elif self.response_model is not None:
            attributes["gen_ai.response.model"] = self.response_model
        if isinstance(error, APIError) and status is None:
            status = error.status_code
        if status is not None:
            attributes["http.response.status_code"] = status
        if disconnected:
            attributes[CLIENT_DISCONNECTED] = True
        self.span.set_attributes(attributes)
        if error is not None:
            message = error.message if isinstance(error, APIError) else str(error)
            self.span.fail(type(error).__name__, message or type(error).__name__)
        self.span.end()


def generation_attributes(gen: Generation, response_model: str | None) -> Attributes:
    """The GenAI attributes of a generation as it stands (pure)."""
    attributes: Attributes = {"gen_ai.response.id": gen.id}
    if gen.choices:
        attributes.update(_request_attributes(gen.choices))
    if response_model is not None:
        attributes["gen_ai.response.model"] = response_model
    reasons = [c.finish_reason for c in gen.choices if c.finish_reason is not None]
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = reasons
    usage = gen.usage()
    attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
    attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
    attributes.update(engine_timings(gen.choices))
    return attributes


def _request_attributes(choices: list[ChoiceState]) -> Attributes:
    params = choices[0].params
    attributes: Attributes = {
        "gen_ai.request.max_tokens": params.max_tokens,
        "gen_ai.request.temperature": params.temperature,
        "gen_ai.request.top_p": params.top_p,
    }
    if params.top_k:
        attributes["gen_ai.request.top_k"] = params.top_k
    if params.seed is not None:
        attributes["gen_ai.request.seed"] = params.seed
    if params.stop:
        attributes["gen_ai.request.stop_sequences"] = list(params.stop)
    if params.presence_penalty:
        attributes["gen_ai.request.presence_penalty"] = params.presence_penalty
    if params.frequency_penalty:
        attributes["gen_ai.request.frequency_penalty"] = params.frequency_penalty
    if len(choices) > 1:
        attributes["gen_ai.request.choice.count"] = len(choices)
    return attributes


def engine_timings(choices: list[ChoiceState]) -> Attributes:
    """Queue wait, prefill, decode and time to first token from the engine's timestamps
    (those it stamped; an engine that stamps none gives none)."""
    outputs = [c.last_output for c in choices if c.last_output is not None]
    arrival = min((o.arrival_time for o in outputs if o.arrival_time), default=None)
    scheduled = min((o.scheduled_time for o in outputs if o.scheduled_time), default=None)
    first = min((o.first_token_time for o in outputs if o.first_token_time), default=None)
    last = max((o.last_token_time for o in outputs if o.last_token_time), default=None)
    spans = (
        (TIME_IN_QUEUE, arrival, scheduled),
        (TIME_IN_PREFILL, scheduled, first),
        (TIME_IN_DECODE, first, last),
        (TIME_TO_FIRST_TOKEN, arrival, first),
    )
    return {
        name: end - start for name, start, end in spans if start is not None and end is not None
    }
