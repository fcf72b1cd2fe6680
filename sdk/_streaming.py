"""``Stream`` and ``AsyncStream``: iterate the chunks of a streaming call.

Every decision is in ``_protocol.stream.read_flow`` (bytes -> chunks, ``[DONE]``, error
events, truncation, accumulation); ``BaseStream`` holds what does no I/O, and the two
classes only drive the flow. They own the HTTP response: leaving the ``with`` block,
``close()``, finishing, an exception, or cancelling the task that iterates closes the
connection, which is how a server learns to stop generating. A failure while iterating
ends the stream with its error, unless the stream's output is reproducible: then the flow
resumes it (``_protocol.resume``), and the driver performs the ``Close``/``Sleep``/``Send``
that takes, with the client's own ``perform``.

Streams their owners give up on are closed too (issue: a cancelled web handler must not
leave the server generating for nobody):

* The read loop is a module-level generator that sees the stream's small ``_State``, never
  the stream itself, so dropping the last reference to a stream frees it at once and its
  loop closes the response (no reference cycle waiting for the garbage collector). That
  covers a thread that drops its stream.
* A cancelled task is not enough for that: the ``CancelledError`` it keeps holds its frame,
  and so the stream, as long as anyone holds the task. So the async read loop watches the
  task that iterates it (``_watch_owner``), and when that task ends cancelled or failed with
  the stream still open, the response is closed. (A task that returns normally may have
  handed the stream on, so that one is left to the rule above.)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
)
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar, overload

import httpx

from ._exceptions import APIError

if TYPE_CHECKING:  # the clients import this module; the wire models load on the first call
    from ._protocol.actions import Action
    from ._protocol.flow import StreamStart
    from .types import APIObject, ChatCompletion, ChatCompletionChunk, Completion, ResponseInfo

__all__ = ["AsyncStream", "BaseStream", "Stream"]

T = TypeVar("T", bound="APIObject")

# the client's action performer (``Client._perform``): it records each response it opens
Perform: TypeAlias = "Callable[[Action, list[httpx.Response]], object]"
APerform: TypeAlias = "Callable[[Action, list[httpx.Response]], Awaitable[object]]"


class _State:
    """What a stream and its read loop share: whether ``close()`` was called, whether the
    loop has ended (its responses are closed), whether the observers were told, and the
    responses it opened (the first, and any that resumed it)."""

    closed = False
    finished = False
    owner: asyncio.Task[Any] | None = None  # the task that last read an async stream

    def __init__(self, response: httpx.Response) -> None:
        self.ended = False
        self.lock = threading.Lock()  # close() may race the reading thread to _end
        self.opened = [response]


def _end(start: StreamStart[Any, Any], state: _State, error: BaseException | None) -> None:
    """Tell the stream's observers (``StreamStart.observers``) that it ended, once."""
    with state.lock:
        if state.ended:
            return
        state.ended = True
    for observer in start.observers:
        observer.end(error)


class BaseStream(Generic[T]):
    """The I/O-free part of a stream: the response, its facts, and the accumulated result."""

    def __init__(self, start: StreamStart[T, Any]) -> None:
        self.response: httpx.Response = start.response
        self.response_info: ResponseInfo = start.info
        self._start = start
        self._state = _State(start.response)
        if start.observers:  # a stream dropped unread still ends for its observers
            weakref.finalize(self, _end, start, self._state, None)

    def _text(self, chunk: T) -> str | None:
        return self._start.accumulator.text(chunk)

    def _final(self) -> Any:
        final = self._start.accumulator.result()
        final._response_info = self.response_info
        return final


def _iterate(
    start: StreamStart[T, Iterator[bytes]], state: _State, perform: Perform
) -> Generator[T, None, None]:
    from ._protocol.actions import ACTIONS
    from ._protocol.stream import read_flow

    flow, reply = read_flow(start), None
    error: APIError | None = None
    try:
        while True:
            item = flow.send(reply) if error is None else flow.throw(error)
            reply, error = None, None
            if not isinstance(item, ACTIONS):
                yield item
                continue
            try:
                reply = perform(item, state.opened)
            except APIError as exc:
                error = exc
            if state.closed:  # closed by another thread while reading
                return
    except StopIteration:
        return
    except APIError as exc:
        if not state.closed:  # after close(), a failing read is the expected end
            error = exc
            raise
    finally:
        state.finished = True
        for response in state.opened:
            response.close()
        _end(start, state, error)


_closing: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks


def _watch_owner(state: _State) -> None:
    """Close the responses if the task now reading ends cancelled or failed before the stream."""
    task = asyncio.current_task()
    if task is None or task is state.owner:
        return
    state.owner = task

    def owner_done(task: asyncio.Task[Any]) -> None:
        if state.finished or state.closed or state.owner is not task:
            return
        if task.cancelled() or task.exception() is not None:
            for response in state.opened:
                closing = task.get_loop().create_task(response.aclose())
                _closing.add(closing)
                closing.add_done_callback(_closing.discard)

    task.add_done_callback(owner_done)


async def _aiterate(
    start: StreamStart[T, AsyncIterator[bytes]], state: _State, perform: APerform
) -> AsyncGenerator[T, None]:
    from ._protocol.actions import ACTIONS
    from ._protocol.stream import read_flow

    flow, reply = read_flow(start), None
    error: APIError | None = None
    try:
        while True:
            item = flow.send(reply) if error is None else flow.throw(error)
            reply, error = None, None
            if not isinstance(item, ACTIONS):
                _watch_owner(state)
                yield item
                continue
            try:
                reply = await perform(item, state.opened)
            except APIError as exc:
                error = exc
            if state.closed:  # closed by another task while reading
                return
    except StopIteration:
        return
    except APIError as exc:
        if not state.closed:  # after close(), a failing read is the expected end
            error = exc
            raise
    finally:
        # Also reached when the task iterating is cancelled, so the server sees the
        # connection close and stops generating.
        state.finished = True
        for response in state.opened:
            await response.aclose()
        _end(start, state, error)


class Stream(BaseStream[T]):
    """The chunks of a streaming call, as an iterator and a context manager.

    >>> with client.chat.completions.create(model="m", messages=msgs, stream=True) as stream:
    ...     for text in stream.text_stream:  # doctest: +SKIP
    ...         print(text, end="")
    ...     completion = stream.get_final_completion()
    """

    def __init__(self, start: StreamStart[T, Iterator[bytes]], perform: Perform) -> None:
        super().__init__(start)
        self._iterator = _iterate(start, self._state, perform)

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
        self._state.closed = True
        with contextlib.suppress(ValueError, RuntimeError):  # "generator already executing"
            self._iterator.close()
        for response in self._state.opened:  # also ends a read blocked in another thread
            response.close()
        _end(self._start, self._state, None)

    @property
    def text_stream(self) -> Iterator[str]:
        """Only the text of the first choice, delta by delta (shares the stream's position)."""
        return (text for chunk in self if (text := self._text(chunk)))

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
        return self._final()


class AsyncStream(BaseStream[T]):
    """The chunks of a streaming call on ``AsyncClient``: ``Stream`` with ``async``.

    >>> stream = await client.chat.completions.create(model="m", messages=msgs, stream=True)
    >>> async with stream:  # doctest: +SKIP
    ...     async for text in stream.text_stream:
    ...         print(text, end="")
    """

    def __init__(self, start: StreamStart[T, AsyncIterator[bytes]], perform: APerform) -> None:
        super().__init__(start)
        self._iterator = _aiterate(start, self._state, perform)

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
        self._state.closed = True
        with contextlib.suppress(ValueError, RuntimeError):  # "generator already executing"
            await self._iterator.aclose()
        for response in self._state.opened:  # also ends a read blocked in another task
            await response.aclose()
        _end(self._start, self._state, None)

    @property
    def text_stream(self) -> AsyncIterator[str]:
        """Only the text of the first choice, delta by delta (shares the stream's position)."""
        return (text async for chunk in self if (text := self._text(chunk)))

    @overload
    async def get_final_completion(self: AsyncStream[ChatCompletionChunk]) -> ChatCompletion: ...
    @overload
    async def get_final_completion(self: AsyncStream[Completion]) -> Completion: ...
    async def get_final_completion(self) -> object:
        """Read the rest of the stream and return all it sent as one completion object."""
        async for _ in self:
            pass
        return self._final()
