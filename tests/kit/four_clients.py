"""The official ``openai`` client and this SDK, each sync and async, on one live server.

``await clients.run(kind, fn)`` calls ``fn(client)`` with one of them (a sync client in a
thread, so the calls of one test can go out together and be batched by the server);
``await clients.each(fn)`` does it with all four at once::

    replies = await clients.each(lambda c: c.chat.completions.create(model=m, messages=msgs))
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import openai

import sdk

KINDS = ("openai-sync", "openai-async", "sdk-sync", "sdk-async")
Call = Callable[[Any], Any]


class FourClients:
    def __init__(self, base_url: str, *, timeout: float = 600.0) -> None:
        url = f"{base_url}/v1"
        # no retries: a retried 429 or 500 would hide what the server answered
        self.clients: dict[str, Any] = {
            "openai-sync": openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=timeout),
            "openai-async": openai.AsyncOpenAI(
                base_url=url, api_key="x", max_retries=0, timeout=timeout
            ),
            "sdk-sync": sdk.Client(base_url=url, max_retries=0, timeout=timeout),
            "sdk-async": sdk.AsyncClient(base_url=url, max_retries=0, timeout=timeout),
        }

    async def run(self, kind: str, fn: Call) -> Any:
        if kind.endswith("-sync"):
            return await asyncio.to_thread(fn, self.clients[kind])
        result = fn(self.clients[kind])
        return await result if isinstance(result, Awaitable) else result

    async def each(self, fn: Call) -> dict[str, Any]:
        """``fn`` with every client, concurrently: ``{kind: result}``."""
        results = await asyncio.gather(*(self.run(kind, fn) for kind in KINDS))
        return dict(zip(KINDS, results, strict=True))

    async def close(self) -> None:
        for kind, client in self.clients.items():
            closed = client.close()
            if kind.endswith("-async"):
                await closed


def stream_final(kind: str, **kwargs: Any) -> Call:
    """A call that runs the ``stream()`` helper (openai's or ours) to its final completion."""

    def sync(client: Any) -> Any:
        with client.chat.completions.stream(**kwargs) as stream:
            return stream.get_final_completion()

    async def async_(client: Any) -> Any:
        async with client.chat.completions.stream(**kwargs) as stream:
            return await stream.get_final_completion()

    return sync if kind.endswith("-sync") else async_


def message_fields(message: Any) -> dict[str, Any]:
    """What must agree between clients, and between a stream and a reply: the text and the
    calls (ids are made per response)."""
    calls = [(c.function.name, c.function.arguments) for c in message.tool_calls or []]
    return {"content": message.content, "calls": calls}
