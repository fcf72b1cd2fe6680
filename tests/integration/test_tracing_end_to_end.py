"""One SDK call, traced on both sides: the client span (``sdk.otel.OpenTelemetryHooks``) and
the server span (``create_app(tracer_provider=)``) are one trace, the server's a child of the
client's, with the same token counts as the response's ``usage``. A real uvicorn in this
process over the tiny model; each side exports to its own in-memory exporter.

Retries as events on the client span are covered by tests/unit/sdk/otel/test_tracing.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kit.in_process import running_engine, serve_in_thread
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import sdk
from server_ref.api.app import create_app
from server_ref.api.tracing import TIME_IN_DECODE, TIME_IN_PREFILL, TIME_IN_QUEUE

M = [{"role": "user", "content": "Tell me a story."}]


class Side:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def span(self) -> ReadableSpan:
        # A stream's server span ends just after its last bytes went out, which the client
        # may read first: wait for it (bounded), as a tracing backend would.
        deadline = time.monotonic() + 10
        while not self.exporter.get_finished_spans() and time.monotonic() < deadline:
            time.sleep(0.01)
        (span,) = self.exporter.get_finished_spans()
        return span


@pytest.fixture(scope="module")
def server(tiny_gguf: Path) -> Iterator[tuple[str, Side]]:
    side = Side()
    with running_engine(tiny_gguf) as engine:
        app = create_app(engine, tracer_provider=side.provider)
        with serve_in_thread(app) as url:
            yield url, side


def _call(mode: str, url: str, hooks: Any, stream: bool) -> tuple[str, Any]:
    """The reply's model and usage, from a sync or async client."""
    kwargs: dict[str, Any] = {"model": "tiny-test-llama", "messages": M, "max_tokens": 12}
    if stream:
        kwargs |= {"stream": True, "stream_options": {"include_usage": True}}
    if mode == "sync":
        with sdk.Client(base_url=f"{url}/v1", api_key="unused", hooks=hooks) as client:
            reply = client.chat.completions.create(**kwargs)
            chunks = list(reply) if stream else [reply]
    else:

        async def run() -> list[Any]:
            async with sdk.AsyncClient(base_url=f"{url}/v1", api_key="unused", hooks=hooks) as c:
                reply = await c.chat.completions.create(**kwargs)
                return [chunk async for chunk in reply] if stream else [reply]

        chunks = asyncio.run(run())
    return chunks[0].model, chunks[-1].usage


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_one_call_is_one_trace_across_client_and_server(
    server: tuple[str, Side], mode: str, stream: bool
) -> None:
    url, server_side = server
    server_side.exporter.clear()
    client_side = Side()
    model, usage = _call(mode, url, sdk_hooks(client_side), stream)

    client, served = client_side.span(), server_side.span()
    assert client.kind is SpanKind.CLIENT and served.kind is SpanKind.SERVER
    assert served.context.trace_id == client.context.trace_id
    assert served.parent is not None and served.parent.span_id == client.context.span_id
    for span in (client, served):
        attributes = span.attributes or {}
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.response.model"] == model
        assert attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens
        assert attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens
    timings = served.attributes or {}
    assert all(timings[name] >= 0 for name in (TIME_IN_QUEUE, TIME_IN_PREFILL, TIME_IN_DECODE))
    # the engine's timings happen inside the server span
    assert served.start_time is not None and served.end_time is not None
    within = (served.end_time - served.start_time) / 1e9
    assert timings[TIME_IN_QUEUE] + timings[TIME_IN_PREFILL] + timings[TIME_IN_DECODE] <= within


def sdk_hooks(side: Side) -> Any:
    from sdk.otel import OpenTelemetryHooks

    return OpenTelemetryHooks(side.provider, provider_name="server_ref")
