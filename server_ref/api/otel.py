"""``tracing``'s spans on OpenTelemetry, and the OTLP exporter behind ``--otlp-traces-endpoint``.

Imported only when the app is given a tracer provider (``create_app(tracer_provider=)``), so
a server without the ``otel`` extra never loads OpenTelemetry. The caller's context comes
from OpenTelemetry's configured propagator (by default W3C Trace Context and Baggage, as the
SDK's ``OpenTelemetryHooks`` inject them; ``OTEL_PROPAGATORS`` changes both sides), unless
an HTTP span is already current.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from server_ref.api.tracing import RequestSpan

if TYPE_CHECKING:  # opentelemetry-sdk: needed only for the OTLP exporter
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider

TRACER_NAME = "server_ref"
OTLP_TRACES_PATH = "/v1/traces"  # the OTLP/HTTP path a collector serves traces on


class OpenTelemetryTracer:
    """A ``tracing.RequestTracer`` over an OpenTelemetry ``TracerProvider``.

    >>> tracer = OpenTelemetryTracer(TracerProvider())  # doctest: +SKIP
    """

    def __init__(self, provider: trace.TracerProvider) -> None:
        self._tracer = provider.get_tracer(TRACER_NAME)

    def start_span(
        self, name: str, headers: Mapping[str, str], attributes: Mapping[str, Any]
    ) -> RequestSpan:
        # Under an HTTP span that instrumentation already started (FastAPI's own telemetry,
        # opentelemetry-instrument), which continued the caller's trace: nest in it.
        current = trace.get_current_span()
        parent = None if current.get_span_context().is_valid else propagate.extract(headers)
        span = self._tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        return _Span(span)


class _Span:
    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def update_name(self, name: str) -> None:
        self._span.update_name(name)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._span.set_attributes(attributes)

    def fail(self, error_type: str, message: str) -> None:
        self._span.set_attribute("error.type", error_type)
        self._span.set_status(StatusCode.ERROR, message[:300])

    def end(self) -> None:
        self._span.end()


def otlp_traces_url(endpoint: str) -> str:
    """The URL spans are posted to: ``endpoint``, with ``/v1/traces`` when it has no path.

    >>> otlp_traces_url("http://collector:4318")
    'http://collector:4318/v1/traces'
    """
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + OTLP_TRACES_PATH
    return endpoint


def otlp_tracer_provider(endpoint: str) -> SDKTracerProvider:
    """A provider that sends spans in batches over OTLP/HTTP (protobuf) to ``endpoint``.

    Needs ``opentelemetry-sdk`` and ``opentelemetry-exporter-otlp-proto-http`` (the ``otel``
    extra). ``service.name`` is ``$OTEL_SERVICE_NAME``, else ``server_ref``. Call
    ``shutdown()`` on it at exit: that sends the spans still waiting.

    >>> provider = otlp_tracer_provider("http://localhost:4318")  # doctest: +SKIP
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    service = os.environ.get("OTEL_SERVICE_NAME") or TRACER_NAME
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(otlp_traces_url(endpoint))))
    return provider
