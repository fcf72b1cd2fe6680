"""SIGTERM drains the server: running streams finish (or, past the deadline, end with an error
event), new requests get 503, and the process exits 0 soon after the deadline."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from kit.live_server import TINY_ENV, LiveServer, live_server
from kit.tinymodel import write_tiny_gguf

DRAIN_S = 6.0
SHORT, LONG = 60, 16_000  # 60 steps fit in the drain; 16,000 sequential steps never do


@pytest.fixture
def long_context_server(tmp_path: Path) -> Iterator[LiveServer]:
    gguf = write_tiny_gguf(tmp_path / "tiny-16k.gguf", context_length=16_384)
    args = ["--model", str(gguf), "--device", "cpu", "--kv-cache-mib", "320"]
    args += ["--drain-timeout", str(DRAIN_S)]
    with live_server(args, log_dir=tmp_path, env=TINY_ENV) as server:
        yield server


@dataclass
class Stream:
    max_tokens: int
    events: list[Any] = field(default_factory=list)
    last_event_at: float = 0.0
    started: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def content_chunks(self) -> int:
        return sum(
            1
            for e in self.events
            if isinstance(e, dict) and e.get("choices") and e["choices"][0]["delta"].get("content")
        )


async def run_stream(http: httpx.AsyncClient, i: int, stream: Stream) -> None:
    body = {
        "messages": [{"role": "user", "content": f"stream {i}"}],
        "max_tokens": stream.max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            stream.events.append(data if data == "[DONE]" else json.loads(data))
            stream.last_event_at = time.monotonic()
            if stream.content_chunks:
                stream.started.set()


async def test_sigterm_drains_running_streams_and_exits_zero(
    long_context_server: LiveServer,
) -> None:
    server = long_context_server
    streams = [Stream(SHORT if i % 2 else LONG) for i in range(16)]
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as http:
        tasks = [asyncio.ensure_future(run_stream(http, i, s)) for i, s in enumerate(streams)]
        await asyncio.wait_for(asyncio.gather(*(s.started.wait() for s in streams)), 60)

        server.process.send_signal(signal.SIGTERM)
        sent_at = time.monotonic()

        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as late:
            health = await late.get("/health")
            assert health.status_code == 503, health.text
            assert health.json()["error"]["code"] == "draining"
            r = await late.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
            )
        assert r.status_code == 503, r.text
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["connection"] == "close"
        error = r.json()["error"]
        assert (error["type"], error["code"]) == ("service_unavailable_error", "draining")
        assert "shutting down" in error["message"]

        await asyncio.wait_for(asyncio.gather(*tasks), DRAIN_S + 10)
    exit_status = await asyncio.to_thread(server.process.wait, DRAIN_S + 10)
    exited_after = time.monotonic() - sent_at

    assert exit_status == 0, server.log()
    assert exited_after <= DRAIN_S + 2.0, f"exited {exited_after:.1f} s after SIGTERM"
    assert "Traceback" not in server.log()
    for i, s in enumerate(streams):
        assert s.events[-1] == "[DONE]", (i, s.events[-3:])
        if s.max_tokens == SHORT:  # finished in the drain
            assert s.events[-2]["usage"]["completion_tokens"] == SHORT, (i, s.events[-3:])
        else:  # stopped at the deadline
            error = s.events[-2]["error"]
            assert error["type"] == "service_unavailable_error", error
            assert "shutting down" in error["message"]
            assert s.last_event_at >= sent_at + DRAIN_S - 0.5
    # the short streams were still running when the signal came, and were let finish
    assert any(s.last_event_at > sent_at for s in streams if s.max_tokens == SHORT)
