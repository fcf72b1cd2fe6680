"""Helpers for SDK tests: one test body runs against ``Client`` and ``AsyncClient``.

``api`` is a tiny adapter: ``api.client(handler)`` builds the client under test on an
``httpx.MockTransport``, and ``api.run(fn)`` calls ``fn(client)`` and, for the async
client, awaits what it returns inside a fresh event loop. Streams are consumed with
``api.run(lambda c: api.drain(c.chat.completions.create(..., stream=True)))``.
Retry sleeps are recorded in ``api.sleeps`` instead of slept.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx

import sdk
from sdk.types import ChatMessageParam

Handler = Callable[[httpx.Request], httpx.Response]
NO_JITTER = sdk.RetryPolicy(jitter=0.0)  # retry delays exactly as computed


class Api:
    """Run one test body against ``Client`` or ``AsyncClient``.

    ``retry_policy``: the clients' default for this adapter (tests pass their own too).
    A ``sleep=`` given to ``client`` is a plain function for both flavours.
    """

    def __init__(self, is_async: bool, retry_policy: sdk.RetryPolicy = NO_JITTER) -> None:
        self.is_async = is_async
        self.retry_policy = retry_policy
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[float], None] | None = None  # runs inside the recorded sleep
        self._runner: asyncio.Runner | None = None

    def keep_loop(self) -> None:
        """Run every later async step in one event loop: a stream opened in one step and
        read in another needs it (``asyncio.run`` closes its loop's async generators)."""
        if self.is_async and self._runner is None:
            self._runner = asyncio.Runner()

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()

    def _record(self, seconds: float) -> None:
        if self.on_sleep is not None:
            self.on_sleep(seconds)
        self.sleeps.append(seconds)

    def client(self, handler: Handler, **kwargs: Any) -> Any:
        return self._build(sdk.Client, sdk.AsyncClient, handler, **kwargs)

    def router(self, handler: Handler, endpoints: list[Any], **kwargs: Any) -> Any:
        """A ``Router`` / ``AsyncRouter`` over ``endpoints``, all served by ``handler``."""
        return self._build(sdk.Router, sdk.AsyncRouter, handler, endpoints, **kwargs)

    def _build(self, sync: Any, async_: Any, handler: Handler, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("retry_policy", self.retry_policy)
        sync_sleep = kwargs.pop("sleep", self._record)
        transport = httpx.MockTransport(handler)
        if self.is_async:

            async def sleep(seconds: float) -> None:
                sync_sleep(seconds)

            return async_(*args, transport=transport, sleep=sleep, **kwargs)
        return sync(*args, transport=transport, sleep=sync_sleep, **kwargs)

    def run(self, fn: Callable[[Any], Any], client: Any) -> Any:
        if not self.is_async:
            return fn(client)

        async def main() -> Any:
            result = fn(client)
            return await result if inspect.isawaitable(result) else result

        if self._runner is not None:
            return self._runner.run(main())
        return asyncio.run(main())

    async def _adrain(self, stream: Any) -> list[Any]:
        stream = await stream
        async with stream:
            return [chunk async for chunk in stream]

    def drain(self, stream: Any) -> Any:
        """All chunks of a stream (a coroutine of them for the async client)."""
        if self.is_async:
            return self._adrain(stream)
        with stream:
            return list(stream)

    async def _anext_chunk(self, stream: Any) -> Any:
        return await anext(await stream)

    def next_chunk(self, stream: Any) -> Any:
        """The next chunk of an open stream (awaited for the async client)."""
        return self._anext_chunk(stream) if self.is_async else next(stream)

    async def _afinal(self, stream: Any) -> Any:
        return await (await stream).get_final_completion()

    def final(self, stream: Any) -> Any:
        """``get_final_completion()`` of a stream (awaited for the async client)."""
        return self._afinal(stream) if self.is_async else stream.get_final_completion()

    async def _atext(self, stream: Any) -> list[str]:
        return [text async for text in (await stream).text_stream]

    def text(self, stream: Any) -> Any:
        return self._atext(stream) if self.is_async else list(stream.text_stream)


# --- building responses ---------------------------------------------------------------------


class TrackedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that records being closed and can fail or hang part-way."""

    def __init__(
        self,
        parts: list[bytes],
        error: Exception | None = None,
        hang: asyncio.Event | None = None,
    ) -> None:
        self.parts, self.error, self.hang = parts, error, hang
        self.closed = False
        self.read = 0  # parts handed out

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            self.read += 1
            yield part
        if self.error is not None:
            raise self.error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            self.read += 1
            yield part
        if self.hang is not None:
            await self.hang.wait()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True
        if self.hang is not None:
            self.hang.set()  # like a socket: closing ends a read that is waiting


def sse(*events: object, done: bool = True) -> bytes:
    """An OpenAI-style event stream body: one ``data:`` event per object, then [DONE]."""
    frames = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
    if done:
        frames.append(b"data: [DONE]\n\n")
    return b"".join(frames)


def chat_chunk(content: str | None = None, index: int = 0, **fields: Any) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    delta.update(fields.pop("delta", {}))
    choice = {"index": index, "delta": delta, "finish_reason": fields.pop("finish_reason", None)}
    choice.update(fields.pop("choice", {}))
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m"}
    chunk["choices"] = fields.pop("choices", [choice])
    chunk.update(fields)
    return chunk


def completion_chunk(text: str, **fields: Any) -> dict[str, Any]:
    """A legacy ``/completions`` stream chunk of one choice (``finish_reason``, ``logprobs``
    go into the choice; other fields into the chunk)."""
    choice = {"index": 0, "text": text, "finish_reason": fields.pop("finish_reason", None)}
    if "logprobs" in fields:
        choice["logprobs"] = fields.pop("logprobs")
    chunk = {"id": "cmpl-1", "object": "text_completion", "created": 7, "model": "m"}
    return {**chunk, "choices": [choice], **fields}


def completion_body(content: str = "hi") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 7,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


MESSAGES: list[ChatMessageParam] = [{"role": "user", "content": "Hi"}]
