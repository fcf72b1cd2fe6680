"""``OpenTelemetryHooks``: one client span per call, and ``traceparent`` on every request.

The span starts when the call does (a child of the caller's current span), covers all its
attempts, and ends with the call — for a stream, when the stream ends or is closed. Its
attributes follow the GenAI conventions (``semconv``); a failed attempt followed by another
becomes an event (``retry``, or ``failover`` when a router moved the call to another server);
a stream records ``gen_ai.response.time_to_first_chunk``, the seconds until the first chunk
that carries output, and an event at that moment.

Propagation: each request gets the headers of OpenTelemetry's configured propagator (by
default W3C ``traceparent`` and ``tracestate``, plus ``baggage``) for the call's span, so a
server that extracts them (``opentelemetry.propagate.extract``) continues the same trace;
retries and failovers carry the same parent span.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from sdk._policies.hooks import CallInfo
from sdk._version import __version__

from . import semconv

__all__ = ["OpenTelemetryHooks"]


class OpenTelemetryHooks:
    """A span per call after the GenAI semantic conventions; pass it as ``hooks=``.

    >>> from sdk.otel import OpenTelemetryHooks
    >>> client = Client(hooks=OpenTelemetryHooks())  # doctest: +SKIP

    ``tracer_provider``: where spans go (default: the global one that
    ``opentelemetry.trace.set_tracer_provider`` set). ``provider_name``: the value of
    ``gen_ai.provider.name`` — ``"openai"`` (the wire protocol) unless you say which service
    it is (``"vllm"``, ``"server_ref"``...). ``clock``: seconds, for time to first chunk.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        provider_name: str = "openai",
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._tracer = trace.get_tracer("llm-sdk", __version__, tracer_provider=tracer_provider)
        self._provider = provider_name
        self._clock = clock

    def start_call(self, call: CallInfo) -> _SpanObserver:
        span = self._tracer.start_span(
            semconv.span_name(call),
            kind=SpanKind.CLIENT,
            attributes=semconv.request_attributes(call, self._provider),
        )
        return _SpanObserver(span, call, self._clock)


class _SpanObserver:
    """The span of one call (a ``CallObserver``)."""

    def __init__(self, span: Span, call: CallInfo, clock: Callable[[], float]) -> None:
        self._span = span
        self._call = call
        self._clock = clock
        self._started = clock()
        self._first_chunk = False
        self._context = trace.set_span_in_context(span)

    def request(self, request: httpx.Request) -> None:
        propagate.inject(request.headers, context=self._context)
        if self._call.is_attempt(request):  # the server that answers is the last one asked
            self._span.set_attributes(semconv.server_attributes(request.url))

    def response(self, response: httpx.Response) -> None:
        pass

    def retry(self, failed: httpx.Request, reason: str, request: httpx.Request) -> None:
        # attempts still counts the failed one as the last: the new one is not sent yet
        name, attributes = semconv.retry_attributes(failed, reason, request, self._call.attempts)
        self._span.add_event(name, attributes)

    def chunk(self, chunk: Any) -> None:
        if self._first_chunk or not _has_output(chunk):
            return
        self._first_chunk = True
        seconds = self._clock() - self._started
        self._span.set_attribute(semconv.TIME_TO_FIRST_CHUNK, seconds)
        self._span.add_event("gen_ai.first_chunk", {semconv.TIME_TO_FIRST_CHUNK: seconds})

    def end(self, result: object | None, error: BaseException | None) -> None:
        span = self._span
        span.set_attribute(semconv.ATTEMPTS, self._call.attempts)
        if result is not None:
            span.set_attributes(semconv.response_attributes(result))
        if error is not None:
            kind = semconv.error_type(error)
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, f"{kind}: {error}"[:300]))
        span.end()


def _has_output(chunk: Any) -> bool:
    """Does a stream chunk carry generated output (text, a refusal, a tool call)?"""
    for choice in getattr(chunk, "choices", None) or ():
        delta = getattr(choice, "delta", None)
        if delta is None:  # a text completion's choice
            if getattr(choice, "text", None):
                return True
        elif delta.content or delta.refusal or getattr(delta, "tool_calls", None):
            return True
    return False
