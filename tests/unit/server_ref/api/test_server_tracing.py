"""A span per generation request (``server_ref.api.tracing``), read back from an in-memory
exporter, over the fake engine: no network, no model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kit.asgi import post_scope
from kit.blocked_imports import run_without
from kit.fake_engine import CHAT, FakeEngine, sse_events
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from server_ref.api import create_app
from server_ref.api.otel import otlp_traces_url
from server_ref.api.tracing import (
    CLIENT_DISCONNECTED,
    TIME_IN_DECODE,
    TIME_IN_PREFILL,
    TIME_IN_QUEUE,
    TIME_TO_FIRST_TOKEN,
)
from server_ref.engine.build_embedder import build_embedder
from server_ref.engine.embedder import Embedder

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


class Ticks:
    """A clock that advances one second per reading, from 100."""

    def __init__(self) -> None:
        self.now = 99.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


class Traced:
    def __init__(self, engine: FakeEngine, embedder: Embedder | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.engine = engine
        self.app = create_app(engine, tracer_provider=self.provider, embedder=embedder)

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def span(self) -> ReadableSpan:
        (span,) = self.spans
        return span

    async def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path, json=body, headers=headers)


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = Traced(FakeEngine(clock=Ticks()))
    yield t
    t.provider.shutdown()


async def test_a_chat_request_is_a_server_span_continuing_the_callers_trace(
    traced: Traced,
) -> None:
    response = await traced.post(
        "/v1/chat/completions",
        {**CHAT, "max_tokens": 50, "temperature": 0.5, "seed": 3},
        traceparent=TRACEPARENT,
    )
    body = response.json()
    span = traced.span()
    assert span.name == "chat fake-model" and span.kind is SpanKind.SERVER
    context = span.get_span_context()
    assert f"{context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID
    attributes = dict(span.attributes or {})
    # arrival 100, admitted 101, first token 102, then one token step per second
    steps = len(body["choices"][0]["message"]["content"].encode()) // 3 + 1
    timings = {
        TIME_IN_QUEUE: 1.0,
        TIME_IN_PREFILL: 1.0,
        TIME_IN_DECODE: steps - 1.0,
        TIME_TO_FIRST_TOKEN: 2.0,
    }
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.id": response.headers["x-request-id"],
        "gen_ai.request.model": "fake-model",
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 1.0,
        "gen_ai.request.seed": 3,
        "gen_ai.response.id": body["id"],
        "gen_ai.response.model": body["model"],
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": body["usage"]["prompt_tokens"],
        "gen_ai.usage.output_tokens": body["usage"]["completion_tokens"],
        "http.response.status_code": 200,
        **timings,
    }
    assert span.status.status_code is StatusCode.UNSET


async def test_without_traceparent_the_span_starts_a_trace(traced: Traced) -> None:
    await traced.post("/v1/completions", {"prompt": "Hi", "n": 2, "max_tokens": 4})
    span = traced.span()
    assert span.parent is None and span.name == "text_completion"  # no model named
    attributes = span.attributes or {}
    assert attributes["gen_ai.request.choice.count"] == 2
    assert attributes["gen_ai.response.finish_reasons"] == ("length", "length")
    assert attributes["gen_ai.usage.output_tokens"] == 8  # two choices of four


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_a_streams_span_carries_the_usage_of_its_last_chunk(
    traced: Traced, path: str
) -> None:
    body = CHAT if "chat" in path else {"model": "fake-model", "prompt": "Hi"}
    stream = {"stream": True, "stream_options": {"include_usage": True}}
    response = await traced.post(path, {**body, **stream})
    usage = sse_events(response.text)[-2]["usage"]
    attributes = traced.span().attributes or {}
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attributes[TIME_IN_DECODE] > 0


async def test_an_embeddings_request_is_a_span_with_its_input_tokens(tiny_bert: Path) -> None:
    embedder = build_embedder(tiny_bert, model_id="tiny-bert", device="cpu")
    embedder.start()
    traced = Traced(FakeEngine(), embedder)
    try:
        body = {"model": "tiny-bert", "input": ["hello world", "a cat"]}
        response = await traced.post("/v1/embeddings", body, traceparent=TRACEPARENT)
        assert response.status_code == 200
        span = traced.span()
        assert span.name == "embeddings tiny-bert" and span.kind is SpanKind.SERVER
        assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
        attributes = span.attributes or {}
        assert attributes["gen_ai.operation.name"] == "embeddings"
        assert attributes["gen_ai.response.model"] == "tiny-bert"
        assert attributes["gen_ai.usage.input_tokens"] == response.json()["usage"]["prompt_tokens"]
        assert attributes["http.response.status_code"] == 200
        traced.exporter.clear()
        missing = await traced.post("/v1/embeddings", {**body, "model": "nope"})
        assert missing.status_code == 404
        assert traced.span().status.status_code is StatusCode.ERROR
    finally:
        traced.provider.shutdown()
        embedder.shutdown()


async def test_a_refused_request_is_an_error_span(traced: Traced) -> None:
    traced.engine.queue_full = True
    response = await traced.post("/v1/chat/completions", CHAT)
    assert response.status_code == 429
    span = traced.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == response.json()["error"]["message"]
    assert (span.attributes or {})["error.type"] == "OverloadedError"
    assert (span.attributes or {})["http.response.status_code"] == 429


async def test_an_invalid_request_is_an_error_span(traced: Traced) -> None:
    response = await traced.post("/v1/completions", {"prompt": "Hi", "temperature": -1})
    assert response.status_code == 400
    span = traced.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == response.json()["error"]["message"]


async def test_a_stream_that_fails_midway_is_an_error_span(traced: Traced) -> None:
    traced.engine.error_after_steps = 2
    response = await traced.post("/v1/chat/completions", {**CHAT, "stream": True})
    error = next(e["error"] for e in sse_events(response.text) if "error" in e)
    span = traced.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == error["message"]
    assert (span.attributes or {})["gen_ai.response.finish_reasons"] == ("error",)
    assert (span.attributes or {})["http.response.status_code"] == 200  # sent before


class Connection:
    """One streaming request driven over raw ASGI; the test says when the client leaves."""

    def __init__(self, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.scope = post_scope("/v1/chat/completions", (b"traceparent", TRACEPARENT.encode()))
        self._pending = [{"type": "http.request", "body": raw, "more_body": False}]
        self.gone = asyncio.Event()
        self.bodies: asyncio.Queue[bytes] = asyncio.Queue()

    async def receive(self) -> dict[str, Any]:
        if self._pending:
            return self._pending.pop(0)
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            await self.bodies.put(message["body"])


async def test_a_stream_span_ends_when_the_client_leaves(traced: Traced) -> None:
    traced.engine.hang_after_steps = 2
    conn = Connection({**CHAT, "stream": True})
    task = asyncio.ensure_future(traced.app(conn.scope, conn.receive, conn.send))
    async with asyncio.timeout(10):
        await conn.bodies.get()  # the stream is open
        assert traced.spans == ()  # and so is its span
        conn.gone.set()
        await task
    span = traced.span()
    attributes = span.attributes or {}
    assert attributes[CLIENT_DISCONNECTED] is True
    assert attributes["gen_ai.response.finish_reasons"] == ("abort",)
    assert span.status.status_code is StatusCode.UNSET  # the client's choice, no failure


def test_the_server_imports_no_opentelemetry_of_its_own() -> None:
    # FastAPI >= 0.13x imports opentelemetry-api itself (its native telemetry); what is
    # loaded once it is imported is blocked from then on, and the server must still serve
    code = (
        "import asyncio, sys, httpx\n"
        "before = {m for m in sys.modules if m.startswith('opentelemetry')}\n"
        "sys.path.insert(0, 'tests')\n"
        "from kit.fake_engine import CHAT, FakeEngine\n"
        "from server_ref.api import create_app\n"
        "async def main():\n"
        "    transport = httpx.ASGITransport(app=create_app(FakeEngine()))\n"
        "    async with httpx.AsyncClient(transport=transport, base_url='http://t') as c:\n"
        "        r = await c.post('/v1/chat/completions', json=CHAT)\n"
        "    print(r.status_code)\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')\n"
        "             and m not in before))\n"
    )
    proc = run_without(["opentelemetry"], code, after=["fastapi"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["200", "[]"]


@pytest.mark.parametrize(
    ("blocked", "url", "says"),
    [
        (["opentelemetry"], "http://localhost:4318", "is not installed"),
        ([], "localhost:4318", "must be an http(s) URL"),
    ],
)
def test_otlp_endpoint_problems_are_one_line_and_status_2(
    blocked: list[str], url: str, says: str
) -> None:
    code = (
        "import sys\n"
        "from server_ref.cli import main\n"
        f"sys.exit(main(['serve', '--model', 'nowhere.gguf', '--otlp-traces-endpoint', {url!r}]))\n"
    )
    proc = run_without(blocked or ["no-such-package"], code, after=["fastapi"])
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: --otlp-traces-endpoint") and says in line


def test_the_otlp_url_gets_the_traces_path_when_it_has_none() -> None:
    assert otlp_traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert otlp_traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert otlp_traces_url("https://x.example/otlp/v1/traces") == (
        "https://x.example/otlp/v1/traces"
    )
