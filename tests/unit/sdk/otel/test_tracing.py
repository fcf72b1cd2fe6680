"""OpenTelemetry tracing of SDK calls, read back from the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kit.clients import Api, chat_chunk, completion_body, completion_chunk, sse
from kit.replicas import Replicas
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import sdk
from sdk.otel import OpenTelemetryHooks, semconv

M = [{"role": "user", "content": "Hi"}]
EVENT_STREAM = {"content-type": "text/event-stream"}


class Tracing:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def hooks(self, **kwargs: Any) -> OpenTelemetryHooks:
        return OpenTelemetryHooks(self.provider, **kwargs)

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def span(self) -> ReadableSpan:
        (span,) = self.spans
        return span


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    t = Tracing()
    yield t
    t.provider.shutdown()


def test_a_chat_call_is_one_span_with_the_genai_attributes(api: Api, tracing: Tracing) -> None:
    client = api.client(
        lambda r: httpx.Response(200, json=completion_body("Paris") | {"model": "m-2024"}),
        hooks=tracing.hooks(provider_name="server_ref"),
        base_url="http://llm.internal:9000/v1",
    )
    reply = api.run(
        lambda c: c.chat.completions.create(
            model="m", messages=M, max_tokens=8, temperature=0.5, top_p=0.9, stop="\n", n=1
        ),
        client,
    )
    span = tracing.span()
    assert span.name == "chat m" and span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "server_ref",
        "gen_ai.system": "server_ref",
        "gen_ai.request.model": "m",
        "gen_ai.request.max_tokens": 8,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.choice.count": 1,
        "gen_ai.request.stop_sequences": ("\n",),
        "gen_ai.response.model": "m-2024",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": reply.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": reply.usage.completion_tokens,
        "server.address": "llm.internal",
        "server.port": 9000,
        "llm_sdk.attempts": 1,
    }
    assert span.status.status_code is StatusCode.UNSET and not span.events


def test_retries_are_span_events(api: Api, tracing: Tracing) -> None:
    answers = [
        httpx.Response(429),
        httpx.Response(502),
        httpx.Response(200, json=completion_body()),
    ]
    client = api.client(lambda r: answers.pop(0), hooks=tracing.hooks())
    api.run(lambda c: c.chat.completions.create(model="m", messages=M), client)
    span = tracing.span()
    assert [
        (e.name, e.attributes["error.type"], e.attributes["llm_sdk.attempt"]) for e in span.events
    ] == [
        ("retry", "RateLimitError", 1),
        ("retry", "InternalServerError", 2),
    ]
    assert span.attributes["llm_sdk.attempts"] == 3


def test_a_failover_is_an_event_naming_both_servers(api: Api, tracing: Tracing) -> None:
    reps = Replicas()
    reps["a"].fail("refused")
    router = api.router(reps, reps.urls, strategy="round_robin", hooks=tracing.hooks())
    api.run(lambda r: r.chat.completions.create(model="m", messages=M), router)
    (event,) = tracing.span().events
    assert event.name == "failover"
    assert dict(event.attributes or {}) == {
        "error.type": "APIConnectionError",
        "llm_sdk.attempt": 1,
        "server.address": "a.test",
        "server.port": 80,
        "llm_sdk.next.server.address": "b.test",
        "llm_sdk.next.server.port": 80,
    }
    assert tracing.span().attributes["server.address"] == "b.test"  # the one that answered


def test_each_request_carries_the_calls_traceparent(api: Api, tracing: Tracing) -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["traceparent"])
        return (
            httpx.Response(503) if len(sent) == 1 else httpx.Response(200, json=completion_body())
        )

    client = api.client(handler, hooks=tracing.hooks())
    tracer = tracing.provider.get_tracer("app")
    with tracer.start_as_current_span("handle request") as parent:
        api.run(lambda c: c.chat.completions.create(model="m", messages=M), client)
    call = next(s for s in tracing.spans if s.name == "chat m")
    assert call.parent is not None and call.parent.span_id == parent.get_span_context().span_id
    context = call.get_span_context()
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert sent == [expected, expected]  # the retry continues the same span


def test_a_stream_span_ends_with_the_stream_and_records_time_to_first_chunk(
    api: Api, tracing: Tracing
) -> None:
    body = sse(
        chat_chunk(delta={"role": "assistant"}),
        chat_chunk("Hel"),
        chat_chunk("lo", finish_reason="stop"),
        chat_chunk(
            choices=[], usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        ),
    )
    ticks = iter([10.0, 10.25])  # the call starts, then the first chunk with text arrives
    client = api.client(
        lambda r: httpx.Response(200, content=body, headers=EVENT_STREAM),
        hooks=tracing.hooks(clock=lambda: next(ticks)),
    )
    api.keep_loop()
    stream = api.run(
        lambda c: c.chat.completions.create(model="m", messages=M, stream=True), client
    )
    assert tracing.spans == ()  # open while the stream is
    api.run(lambda c: api.drain(_ready(stream)), client)
    span = tracing.span()
    attributes = span.attributes or {}
    assert attributes[semconv.TIME_TO_FIRST_CHUNK] == 0.25
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (
        5,
        2,
    )
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.request.stream"] is True
    assert [e.name for e in span.events] == ["gen_ai.first_chunk"]


async def _aready(value: Any) -> Any:
    return value


def _ready(value: Any) -> Any:
    return _aready(value) if isinstance(value, sdk.AsyncStream) else value


def test_a_stream_closed_early_ends_its_span(api: Api, tracing: Tracing) -> None:
    body = sse(completion_chunk("a"), completion_chunk("b"))
    client = api.client(
        lambda r: httpx.Response(200, content=body, headers=EVENT_STREAM), hooks=tracing.hooks()
    )
    api.keep_loop()
    stream = api.run(lambda c: c.completions.create(model="m", prompt="x", stream=True), client)
    assert api.run(lambda c: api.next_chunk(_ready(stream)), client).choices[0].text == "a"
    api.run(lambda c: stream.close(), client)
    span = tracing.span()
    assert span.name == "text_completion m" and span.status.status_code is StatusCode.UNSET
    assert semconv.TIME_TO_FIRST_CHUNK in (span.attributes or {})


def test_a_failed_call_sets_error_type_and_status(api: Api, tracing: Tracing) -> None:
    client = api.client(
        lambda r: httpx.Response(400, json={"error": {"message": "bad"}}), hooks=tracing.hooks()
    )
    with pytest.raises(sdk.BadRequestError):
        api.run(lambda c: c.embeddings.create(model="e", input="x"), client)
    span = tracing.span()
    assert span.name == "embeddings e"
    assert span.attributes["error.type"] == "BadRequestError"
    assert span.status.status_code is StatusCode.ERROR


def test_a_cancelled_call_ends_its_span(tracing: Tracing) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    async def main() -> None:
        client = sdk.AsyncClient(transport=httpx.MockTransport(hang), hooks=tracing.hooks())
        task = asyncio.create_task(client.models.list())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    span = tracing.span()
    assert span.name == "GET /models" and span.attributes["error.type"] == "cancelled"


def test_semconv_helpers() -> None:
    call = sdk.CallInfo(
        "POST", "/chat/completions", "chat", None, False, {"stop": ["a"], "seed": True}
    )
    assert semconv.span_name(call) == "chat"
    assert semconv.request_attributes(call, "openai")["gen_ai.request.stop_sequences"] == ["a"]
    assert "gen_ai.request.seed" not in semconv.request_attributes(
        call, "openai"
    )  # a bool is no seed
    assert semconv.server_attributes(httpx.URL("https://api.example.com/v1")) == {
        "server.address": "api.example.com",
        "server.port": 443,
    }
    assert semconv.response_attributes(object()) == {}
    assert semconv.error_type(GeneratorExit()) == "cancelled"


def test_no_opentelemetry_is_imported_unless_asked_for() -> None:
    code = (
        "import sys, httpx, sdk\n"
        "ok = lambda r: httpx.Response(200, json={'data': []})\n"
        "hooks = sdk.Hooks(on_request=lambda request, call: None)\n"
        "sdk.Client(transport=httpx.MockTransport(ok), hooks=hooks).models.list()\n"
        "sdk.Router(['http://a/v1'], transport=httpx.MockTransport(ok)).models.list()\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
        "import sdk.otel\n"
        "print('opentelemetry.trace' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]


def test_the_global_tracer_provider_is_the_default(api: Api) -> None:
    # no provider configured: spans are no-ops and nothing is sent, but calls work
    seen: list[httpx.Request] = []
    client = api.client(
        lambda r: seen.append(r) or httpx.Response(200, json={"data": []}),
        hooks=OpenTelemetryHooks(),
    )
    api.run(lambda c: c.models.list(), client)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | TracerProvider)
    assert len(seen) == 1
