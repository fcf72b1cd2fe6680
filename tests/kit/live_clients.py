"""Client-side helpers for tests against a live server: the official ``openai`` package in
both its sync and async forms behind one face, a Prometheus text reader, and a greedy
streaming run that records every token.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

MODES = ("sync", "async")

# Gauges of server_ref/api/metrics.py (PREFIX "server_ref"); dashboards depend on these names.
RUNNING = "server_ref:num_requests_running"
WAITING = "server_ref:num_requests_waiting"
KV_USAGE = "server_ref:kv_cache_usage_perc"
FINISHED = "server_ref:request_success_total"  # label finished_reason


class OpenAICalls:
    """``openai.OpenAI`` or ``openai.AsyncOpenAI`` behind awaitable methods, so one test body
    runs against both clients (a sync call simply blocks the test's event loop).

    >>> api = OpenAICalls("sync", "http://127.0.0.1:8000")  # doctest: +SKIP
    >>> await api.create("chat", messages=[...], model="m")  # doctest: +SKIP
    """

    def __init__(
        self, mode: str, base_url: str, *, api_key: str = "unused", timeout: float = 60.0
    ) -> None:
        assert mode in MODES
        self.mode = mode
        options: dict[str, Any] = {
            "base_url": f"{base_url}/v1",
            "api_key": api_key,
            "max_retries": 0,  # a retried 429 or 500 would hide what the server answered
            "timeout": timeout,
        }
        self.client: openai.OpenAI | openai.AsyncOpenAI = (
            openai.OpenAI(**options) if mode == "sync" else openai.AsyncOpenAI(**options)
        )

    async def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        result = method(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def create(self, kind: str, **kwargs: Any) -> Any:
        """``chat.completions.create`` (kind "chat") or ``completions.create`` ("completion");
        a stream is read to its end and returned as the list of its chunks."""
        resource = self.client.chat.completions if kind == "chat" else self.client.completions
        result = await self._call(resource.create, **kwargs)
        if isinstance(result, openai.AsyncStream):
            return [chunk async for chunk in result]
        if isinstance(result, openai.Stream):
            return list(result)
        return result

    async def list_models(self) -> list[str]:
        page = await self._call(self.client.models.list)
        return [m.id for m in page.data]

    async def close(self) -> None:
        result = self.client.close()
        if inspect.isawaitable(result):
            await result


@dataclass
class Outcome:
    """A chat or completion response (or stream) reduced to what tests compare."""

    texts: dict[int, str] = field(default_factory=dict)
    finish_reasons: dict[int, str | None] = field(default_factory=dict)
    usage: Any = None
    chunks: list[Any] = field(default_factory=list)


def outcome(kind: str, result: Any) -> Outcome:
    """Fold a response or a list of stream chunks into an ``Outcome``."""
    out = Outcome()
    if not isinstance(result, list):
        for choice in result.choices:
            text = choice.message.content if kind == "chat" else choice.text
            out.texts[choice.index] = text or ""
            out.finish_reasons[choice.index] = choice.finish_reason
        out.usage = result.usage
        return out
    out.chunks = result
    for chunk in result:
        if chunk.usage is not None:
            out.usage = chunk.usage
        for choice in chunk.choices:
            piece = (choice.delta.content if kind == "chat" else choice.text) or ""
            out.texts[choice.index] = out.texts.get(choice.index, "") + piece
            if choice.finish_reason is not None:
                out.finish_reasons[choice.index] = choice.finish_reason
    return out


def request_args(kind: str, model: str, prompt: str, **kwargs: Any) -> dict[str, Any]:
    """Arguments for ``OpenAICalls.create``: ``prompt`` as one user message for chat."""
    if kind == "chat":
        return {"model": model, "messages": [{"role": "user", "content": prompt}], **kwargs}
    return {"model": model, "prompt": prompt, **kwargs}


# -- metrics ------------------------------------------------------------------------------


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_series(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text format -> ``[(name, labels, value), ...]``."""
    series = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name, _, labels = name_labels.partition("{")
        series.append((name, dict(_LABEL.findall(labels)), float(value)))
    return series


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> ``{name: value}``, summed over label sets."""
    values: dict[str, float] = {}
    for name, _, value in parse_series(text):
        values[name] = values.get(name, 0.0) + value
    return values


async def read_metrics(client: httpx.AsyncClient) -> dict[str, float]:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    return parse_metrics(r.text)


async def finished_count(client: httpx.AsyncClient, reason: str) -> float:
    """How many engine requests ended with ``reason`` (stop, length, abort, error)."""
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    return sum(
        value
        for name, labels, value in parse_series(r.text)
        if name == FINISHED and labels.get("finished_reason") == reason
    )


async def wait_for_metrics(
    client: httpx.AsyncClient, want: dict[str, float], *, within: float
) -> dict[str, float]:
    """Poll ``/metrics`` until every gauge in ``want`` has its value; fail after ``within`` s
    with the last values seen."""
    deadline = time.monotonic() + within
    while True:
        values = await read_metrics(client)
        if all(values[name] == value for name, value in want.items()):
            return values
        if time.monotonic() > deadline:
            seen = {name: values[name] for name in want}
            raise AssertionError(f"after {within} s the gauges are {seen}, expected {want}")
        await asyncio.sleep(0.05)


# -- greedy streams ------------------------------------------------------------------------


@dataclass
class StreamRun:
    text: str
    tokens: list[bytes]  # each generated token's bytes, from logprobs
    finish_reason: str | None
    deltas: list[str] = field(default_factory=list)  # the non-empty content deltas, in order


async def greedy_chat_stream(
    client: openai.AsyncOpenAI,
    model: str,
    prompt: str,
    max_tokens: int,
    extra_body: dict[str, Any] | None = None,
) -> StreamRun:
    """One greedy streamed chat completion, recording the text and every token's bytes."""
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        logprobs=True,
        stream=True,
        extra_body=extra_body,
    )
    run = StreamRun("", [], None)
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                run.text += choice.delta.content
                run.deltas.append(choice.delta.content)
            if choice.logprobs is not None and choice.logprobs.content:
                run.tokens += [bytes(t.bytes or []) for t in choice.logprobs.content]
            run.finish_reason = choice.finish_reason or run.finish_reason
    return run
