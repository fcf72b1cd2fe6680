"""A client that goes away has its engine requests aborted, streaming or not.

These tests drive the ASGI app directly: the test owns ``receive`` and decides when the
client disconnects, which no HTTP client transport lets a test do precisely.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest
from kit.asgi import post_scope
from kit.fake_engine import CHAT, FakeEngine, sse_events

from server_ref.api import create_app

HANG_GUARD_S = 10  # only stops a broken implementation from hanging the suite


class FakeConnection:
    """One HTTP request against an ASGI app with a disconnect the test triggers."""

    def __init__(self, path: str, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.scope = post_scope(path, (b"content-length", str(len(raw)).encode()))
        self._pending = [{"type": "http.request", "body": raw, "more_body": False}]
        self.gone = asyncio.Event()
        self.sent: list[MutableMapping[str, Any]] = []
        self.got_content = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        if self._pending:
            return self._pending.pop(0)
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)
        if any(k in message.get("body", b"") for k in (b'"content":"H', b'"text":"H')):
            self.got_content.set()

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def wait_for(condition: Any) -> None:
    """Yield to the event loop until ``condition()`` holds (bounded by the hang guard)."""
    async with asyncio.timeout(HANG_GUARD_S):
        while not condition():
            await asyncio.sleep(0)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize("when", ["after-content", "immediately"])
async def test_stream_disconnect_aborts_every_choice(
    path: str, when: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = FakeEngine(hang_after_steps=0 if when == "immediately" else 2)
    app = create_app(engine)
    body = {**CHAT, "n": 2} if "chat" in path else {"prompt": "a", "n": 2}
    conn = FakeConnection(path, {**body, "stream": True})
    if when == "immediately":
        conn.gone.set()
    task = asyncio.ensure_future(app(conn.scope, conn.receive, conn.send))
    if when == "after-content":
        async with asyncio.timeout(HANG_GUARD_S):
            await conn.got_content.wait()
        assert len(engine.active) == 2  # both choices are still generating
        conn.gone.set()
    async with asyncio.timeout(HANG_GUARD_S):
        await task
    rids = sorted(rid for rid, _, _ in engine.requests)
    assert len(rids) == 2
    assert sorted(engine.aborted) == rids
    assert sorted(engine.closed_unfinished) == rids  # every engine iterator was closed
    assert engine.active == set()
    assert b"[DONE]" not in conn.body()
    metrics = (await _metrics(app)).text
    assert 'finished_reason="abort",model_name="fake-model"} 2.0' in metrics
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_non_streaming_disconnect_aborts(path: str) -> None:
    engine = FakeEngine(hang_after_steps=1)
    app = create_app(engine)
    body = CHAT if "chat" in path else {"prompt": "a"}
    conn = FakeConnection(path, body)
    task = asyncio.ensure_future(app(conn.scope, conn.receive, conn.send))
    await wait_for(lambda: engine.requests and engine.active)
    conn.gone.set()
    async with asyncio.timeout(HANG_GUARD_S):
        await task
    [(rid, _, _)] = engine.requests
    assert engine.aborted == [rid]
    assert engine.closed_unfinished == [rid]
    assert not any(m["type"] == "http.response.body" and m.get("body") for m in conn.sent)


async def test_finished_requests_are_not_aborted(engine: FakeEngine) -> None:
    app = create_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        r = await c.post("/v1/chat/completions", json={**CHAT, "stream": True, "n": 3})
        assert sse_events(r.text)[-1] == "[DONE]"
        r = await c.post("/v1/completions", json={"prompt": ["a", "b"], "n": 2})
        assert r.status_code == 200
    assert len(engine.requests) == 7
    assert engine.aborted == []
    assert engine.closed_unfinished == []
    assert engine.active == set()


async def test_client_closing_after_error_leaves_nothing_running(engine: FakeEngine) -> None:
    engine.error_after_steps = 2
    app = create_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        r = await c.post("/v1/chat/completions", json={**CHAT, "stream": True, "n": 2})
    assert "error" in sse_events(r.text)[-2]
    assert engine.active == set()


async def _metrics(app: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        return await c.get("/metrics")
