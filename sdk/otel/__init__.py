"""OpenTelemetry tracing of SDK calls (the ``otel`` extra: ``pip install 'llm-sdk[otel]'``).

>>> from sdk import Client
>>> from sdk.otel import OpenTelemetryHooks
>>> client = Client(hooks=OpenTelemetryHooks())  # doctest: +SKIP

One span per call following the GenAI semantic conventions, retries and failovers as span
events, time to first chunk for streams, and W3C ``traceparent`` sent with every request
(``tracing``); the attribute names alone are in ``semconv``. Importing this package imports
OpenTelemetry; ``import sdk`` and clients without these hooks never do.
"""

from __future__ import annotations

try:
    import opentelemetry.trace  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "sdk.otel needs OpenTelemetry: pip install 'llm-sdk[otel]' (opentelemetry-api), plus "
        "opentelemetry-sdk and an exporter to see the spans"
    ) from exc

from .tracing import OpenTelemetryHooks

__all__ = ["OpenTelemetryHooks"]
