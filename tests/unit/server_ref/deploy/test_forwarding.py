"""A request forwarded by the front (``deploy.forwarding``) gets the answer the app gives it
directly: same status, headers and bytes; a client that leaves frees the engine's slot; a
replica that fails is a 503 the SDK retries, or an SSE error event once the stream started.

The Serve call between front and replica is replaced by a local one (``LocalCall``): the
bytes that cross it are the same ASGI messages. No Ray, no model."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from kit.asgi import post_scope
from kit.fake_engine import CHAT, FakeEngine, sse_events
from starlette.types import ASGIApp, Message

from server_ref.api import create_app
from server_ref.deploy.forwarding import Forward, ForwardedRequest, Front, run_forwarded

HANG_GUARD_S = 10  # only stops a broken implementation from hanging the suite
LIMIT = 1000


class LocalCall:
    """What Serve's streaming handle call does, in this process."""

    def __init__(self, batches: AsyncIterator[list[Message]]) -> None:
        self.batches = batches
        self.cancelled = False

    def __aiter__(self) -> AsyncIterator[list[Message]]:
        return self.batches

    def cancel(self) -> None:
        self.cancelled = True


class Replicas:
    """The engine side: runs the app on each forwarded request, keeps what it was sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[ForwardedRequest] = []
        self.calls: list[LocalCall] = []

    def __call__(self, request: ForwardedRequest) -> Forward:
        self.requests.append(request)
        self.calls.append(LocalCall(run_forwarded(self.app, request)))
        return self.calls[-1]


def front(app: ASGIApp, *, body_timeout_s: float = 5.0) -> tuple[Front, Replicas]:
    replicas = Replicas(app)
    return Front(replicas, max_body_bytes=LIMIT, body_timeout_s=body_timeout_s), replicas


def _same(text: str) -> str:
    text = re.sub(r'"id":"[^"]*"', '"id":"-"', text)
    return re.sub(r'"created":\d+', '"created":0', text)


async def answer(app: Any, method: str, path: str, **kwargs: Any) -> tuple[int, str, str, str]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        r = await c.request(method, path, **kwargs)
    return (
        r.status_code,
        r.headers.get("content-type", ""),
        _same(r.text),
        r.headers["x-request-id"],
    )


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/v1/chat/completions", {"json": CHAT}),
        ("POST", "/v1/chat/completions", {"json": {**CHAT, "stream": True}}),
        ("POST", "/v1/completions", {"json": {"model": "fake-model", "prompt": "a"}}),
        ("GET", "/v1/models", {}),
        ("GET", "/metrics", {}),
        ("POST", "/v1/chat/completions", {"content": b"{not json"}),
        ("POST", "/v1/chat/completions", {"json": {**CHAT, "model": "nope"}}),
        ("POST", "/v1/nothing", {"json": {}}),
        ("POST", "/v1/completions", {"content": b"x" * (LIMIT + 1)}),  # Content-Length
        ("POST", "/v1/completions", {"content": [b"x" * 600, b"x" * 600]}),  # chunked
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_same_answer_as_the_app(method: str, path: str, kwargs: dict[str, Any]) -> None:
    app = create_app(FakeEngine(), max_body_bytes=LIMIT)
    app_front, replicas = front(create_app(FakeEngine(), max_body_bytes=LIMIT))
    headers = {"x-request-id": "req-1"}
    if isinstance(kwargs.get("content"), list):  # a body without Content-Length
        chunks = kwargs.pop("content")
        direct = await answer(app, method, path, headers=headers, content=_aiter(chunks))
        forwarded = await answer(app_front, method, path, headers=headers, content=_aiter(chunks))
    else:
        direct = await answer(app, method, path, headers=headers, **kwargs)
        forwarded = await answer(app_front, method, path, headers=headers, **kwargs)
    assert forwarded == direct
    assert len(replicas.requests) == 1


async def _aiter(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_the_router_sees_the_prompt_of_generation_requests_only() -> None:
    app_front, replicas = front(create_app(FakeEngine()))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app_front), base_url="http://t"
    ) as c:
        await c.post("/v1/chat/completions", json=CHAT)
        await c.get("/v1/models")
    chat, models = replicas.requests
    assert chat.routing_text is not None and "Hi" in chat.routing_text
    assert models.routing_text is None
    assert set(chat.scope) <= {
        "type", "asgi", "http_version", "method", "scheme", "path", "raw_path",
        "query_string", "root_path", "headers", "client", "server",
    }  # fmt: skip


class Client:
    """One request whose client the test makes leave."""

    def __init__(self, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.scope = post_scope("/v1/chat/completions")
        self.pending = [{"type": "http.request", "body": raw, "more_body": False}]
        self.gone = asyncio.Event()
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.pending:
            return self.pending.pop(0)
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def test_a_client_that_leaves_frees_the_engine() -> None:
    """Serve's proxy cancels the front's request when its client goes."""
    engine = FakeEngine(hang_after_steps=1)
    app_front, replicas = front(create_app(engine))
    client = Client({**CHAT, "stream": True})
    task = asyncio.ensure_future(app_front(client.scope, client.receive, client.send))
    async with asyncio.timeout(HANG_GUARD_S):
        while not engine.active:
            await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(HANG_GUARD_S):  # the app ends on the replica meanwhile
        while engine.active or not engine.aborted:
            await asyncio.sleep(0)
    assert engine.aborted == [rid for rid, _, _ in engine.requests]
    assert replicas.calls[0].cancelled


class Failing:
    """A replica that dies after sending ``messages``."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages

    def __call__(self, request: ForwardedRequest) -> Forward:
        async def batches() -> AsyncIterator[list[Message]]:
            if self.messages:
                yield self.messages
            raise RuntimeError("the replica's actor died")

        return LocalCall(batches())


async def test_a_replica_failing_before_it_answers_is_a_503_to_retry() -> None:
    app_front = Front(Failing([]), max_body_bytes=LIMIT, body_timeout_s=5)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app_front), base_url="http://t"
    ) as c:
        r = await c.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "service_unavailable_error"


async def test_a_replica_failing_mid_stream_ends_it_with_an_error_event() -> None:
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
    }
    first = {"type": "http.response.body", "body": b'data: {"x":1}\n\n', "more_body": True}
    app_front = Front(Failing([start, first]), max_body_bytes=LIMIT, body_timeout_s=5)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app_front), base_url="http://t"
    ) as c:
        r = await c.post("/v1/chat/completions", json={**CHAT, "stream": True})
    events = sse_events(r.text)
    assert events[0] == {"x": 1} and "error" in events[1] and events[2] == "[DONE]"


async def test_a_body_that_stops_arriving_is_the_apps_408() -> None:
    app = create_app(FakeEngine(), body_timeout_s=0.2)
    app_front, replicas = front(app, body_timeout_s=0.2)
    client = Client(CHAT)
    client.pending = [{"type": "http.request", "body": b'{"model"', "more_body": True}]
    async with asyncio.timeout(HANG_GUARD_S):
        await app_front(client.scope, client.receive, client.send)
    assert replicas.requests[0].complete is False
    assert client.sent[0]["status"] == 408
