"""``Stream`` and ``AsyncStream``: iterate the chunks of a streaming call.

Both are thin shells over ``_protocol.ChunkDecoder`` (bytes -> chunks, ``[DONE]``, error
events, truncation) and an accumulator (chunks -> the final object). They own the HTTP
response: leaving the ``with`` block, ``close()``, finishing, an exception, or cancelling
the task that iterates closes the connection, which is how a server learns to stop
generating. Failures while iterating are never retried: chunks were already delivered.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import httpx

from ._exceptions import APIError, map_transport_errors

if TYPE_CHECKING:  # the clients import this module; the wire models load on the first call
    from ._protocol.accumulate import Accumulator
    from ._protocol.flow import StreamStart
    from .types import APIObject, ChatCompletion, ChatCompletionChunk, Completion, ResponseInfo

__all__ = ["AsyncStream", "Stream"]

T = TypeVar("T", bound="APIObject")


class Stream(Generic[T]):
    """The chunks of a streaming call, as an iterator and a context manager.

    >>> with client.chat.completions.create(model="m", messages=msgs, stream=True) as stream:
    ...     for text in stream.text_stream:  # doctest: +SKIP
    ...         print(text, end="")
    ...     completion = stream.get_final_completion()
    """

    def __init__(
        self, start: StreamStart[T, Iterator[bytes]], accumulator: Accumulator[T, Any]
    ) -> None:
        self.response: httpx.Response = start.response
        self.response_info: ResponseInfo = start.info
        self._accumulator = accumulator
        self._closed = False
        self._iterator = self._iterate(start)

    def _iterate(self, start: StreamStart[T, Iterator[bytes]]) -> Generator[T, None, None]:
        decoder, chunks = start.decoder, start.first
        try:
            while True:
                for chunk in chunks:
                    self._accumulator.add(chunk)
                    yield chunk
                if decoder.done:
                    return
                with map_transport_errors(self.response.request):
                    data = next(start.chunks, None)
                if self._closed:  # closed by another thread or task while reading
                    return
                if data is None:
                    decoder.finish()  # raises: [DONE] never came, the connection broke
                    return
                chunks = decoder.feed(data)
        except APIError:
            if not self._closed:  # after close(), a failing read is the expected end
                raise
        finally:
            self.response.close()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._iterator)

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading and close the connection (idempotent, and safe from another thread)."""
        self._closed = True
        with contextlib.suppress(ValueError, RuntimeError):  # "generator already executing"
            self._iterator.close()
        self.response.close()  # also ends a read blocked in another thread

    @property
    def text_stream(self) -> Iterator[str]:
        """Only the text of the first choice, delta by delta (shares the stream's position)."""
        return (text for chunk in self if (text := self._accumulator.text(chunk)))

    @overload
    def get_final_completion(self: Stream[ChatCompletionChunk]) -> ChatCompletion: ...
    @overload
    def get_final_completion(self: Stream[Completion]) -> Completion: ...
    def get_final_completion(self) -> object:
        """Read the rest of the stream and return all it sent as one completion object.

        Chunks already iterated count too; with ``n > 1`` the choices are kept apart by index.
        """
        for _ in self:
            pass
        final = self._accumulator.result()
        final._response_info = self.response_info
        return final


class AsyncStream(Generic[T]):
    """The chunks of a streaming call on ``AsyncClient``: ``Stream`` with ``async``.

    >>> stream = await client.chat.completions.create(model="m", messages=msgs, stream=True)
    >>> async with stream:  # doctest: +SKIP
    ...     async for text in stream.text_stream:
    ...         print(text, end="")
    """

    def __init__(
        self, start: StreamStart[T, AsyncIterator[bytes]], accumulator: Accumulator[T, Any]
    ) -> None:
        self.response: httpx.Response = start.response
        self.response_info: ResponseInfo = start.info
        self._accumulator = accumulator
        self._closed = False
        self._iterator = self._iterate(start)

    async def _iterate(
        self, start: StreamStart[T, AsyncIterator[bytes]]
    ) -> AsyncGenerator[T, None]:
        decoder, chunks = start.decoder, start.first
        try:
            while True:
                for chunk in chunks:
                    self._accumulator.add(chunk)
                    yield chunk
                if decoder.done:
                    return
                with map_transport_errors(self.response.request):
                    data = await anext(start.chunks, None)
                if self._closed:  # closed by another thread or task while reading
                    return
                if data is None:
                    decoder.finish()  # raises: [DONE] never came, the connection broke
                    return
                chunks = decoder.feed(data)
        except APIError:
            if not self._closed:  # after close(), a failing read is the expected end
                raise
        finally:
            # Also reached when the task iterating is cancelled, so the server sees the
            # connection close and stops generating.
            await self.response.aclose()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await anext(self._iterator)

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop reading and close the connection (idempotent, and safe from another task)."""
        self._closed = True
        with contextlib.suppress(ValueError, RuntimeError):  # "generator already executing"
            await self._iterator.aclose()
        await self.response.aclose()  # also ends a read blocked in another task

    @property
    def text_stream(self) -> AsyncIterator[str]:
        """Only the text of the first choice, delta by delta (shares the stream's position)."""
        return (text async for chunk in self if (text := self._accumulator.text(chunk)))

    @overload
    async def get_final_completion(self: AsyncStream[ChatCompletionChunk]) -> ChatCompletion: ...
    @overload
    async def get_final_completion(self: AsyncStream[Completion]) -> Completion: ...
    async def get_final_completion(self) -> object:
        """Read the rest of the stream and return all it sent as one completion object."""
        async for _ in self:
            pass
        final = self._accumulator.result()
        final._response_info = self.response_info
        return final
