"""``client.chat.completions.stream(...)``: a chat stream whose end is parsed like ``parse()``.

A context manager: entering it sends the request, leaving it closes the connection. Inside,
iterate the chunks or ``text_stream`` (text as it arrives); ``get_final_completion()`` reads
the rest and returns a ``ParsedChatCompletion`` (``message.parsed``, ``parsed_arguments``),
raising the same typed errors as ``parse()``. Thin shells over ``Stream`` / ``AsyncStream``
and ``_protocol.structured``; the async classes are the sync ones with ``await``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from ._protocol.structured import ParseSpec, parse_chat_completion

if TYPE_CHECKING:
    from ._streaming import AsyncStream, Stream
    from .types import ChatCompletionChunk, ParsedChatCompletion

__all__ = [
    "AsyncChatCompletionStream",
    "AsyncChatCompletionStreamManager",
    "ChatCompletionStream",
    "ChatCompletionStreamManager",
]

T = TypeVar("T")

StreamOpener = Callable[[], "Stream[ChatCompletionChunk]"]
AsyncStreamOpener = Callable[[], Awaitable["AsyncStream[ChatCompletionChunk]"]]


class ChatCompletionStream(Generic[T]):
    """The open stream of ``chat.completions.stream(...)``.

    >>> with client.chat.completions.stream(model="m", messages=msgs, response_format=Event) as s:
    ...     for text in s.text_stream:  # doctest: +SKIP
    ...         print(text, end="")
    ...     event = s.get_final_completion().choices[0].message.parsed
    """

    def __init__(self, stream: Stream[ChatCompletionChunk], spec: ParseSpec[T]) -> None:
        self._stream = stream
        self._spec = spec

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        return self._stream.__iter__()

    @property
    def text_stream(self) -> Iterator[str]:
        """The first choice's text, delta by delta."""
        return self._stream.text_stream

    def get_final_completion(self) -> ParsedChatCompletion[T]:
        """Read the rest and return the whole reply, parsed (see ``parse()``)."""
        return parse_chat_completion(self._stream.get_final_completion(), self._spec)

    def close(self) -> None:
        self._stream.close()


class ChatCompletionStreamManager(Generic[T]):
    """Opens the stream on ``__enter__``, closes it on ``__exit__``."""

    def __init__(self, open_stream: StreamOpener, spec: ParseSpec[T]) -> None:
        self._open = open_stream
        self._spec = spec
        self._stream: ChatCompletionStream[T] | None = None

    def __enter__(self) -> ChatCompletionStream[T]:
        self._stream = ChatCompletionStream(self._open(), self._spec)
        return self._stream

    def __exit__(self, *exc_info: object) -> None:
        if self._stream is not None:
            self._stream.close()


class AsyncChatCompletionStream(Generic[T]):
    """``ChatCompletionStream`` for ``AsyncClient``."""

    def __init__(self, stream: AsyncStream[ChatCompletionChunk], spec: ParseSpec[T]) -> None:
        self._stream = stream
        self._spec = spec

    def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        return self._stream.__aiter__()

    @property
    def text_stream(self) -> AsyncIterator[str]:
        """The first choice's text, delta by delta."""
        return self._stream.text_stream

    async def get_final_completion(self) -> ParsedChatCompletion[T]:
        """Read the rest and return the whole reply, parsed (see ``parse()``)."""
        return parse_chat_completion(await self._stream.get_final_completion(), self._spec)

    async def close(self) -> None:
        await self._stream.close()


class AsyncChatCompletionStreamManager(Generic[T]):
    """Opens the stream on ``__aenter__``, closes it on ``__aexit__``."""

    def __init__(self, open_stream: AsyncStreamOpener, spec: ParseSpec[T]) -> None:
        self._open = open_stream
        self._spec = spec
        self._stream: AsyncChatCompletionStream[T] | None = None

    async def __aenter__(self) -> AsyncChatCompletionStream[T]:
        self._stream = AsyncChatCompletionStream(await self._open(), self._spec)
        return self._stream

    async def __aexit__(self, *exc_info: object) -> None:
        if self._stream is not None:
            await self._stream.close()
