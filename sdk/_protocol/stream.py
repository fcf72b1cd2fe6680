"""From SSE events to typed stream chunks: ``[DONE]``, in-stream errors, truncation.

Rules for OpenAI-style streams:

* ``data: [DONE]`` ends the stream; anything after it is ignored.
* ``data: {"error": {...}}`` (OpenAI, vLLM) or an ``event: error`` block (llama.cpp) raises
  the matching ``APIStatusError`` subclass. The class comes from the error's ``code`` when it
  is an HTTP status (vLLM sends ``"code": 400``), else from its ``type``, else it is a 500.
* Other named events (``event: ping`` …) are skipped; comments never reach this layer.
* Bytes ending before ``[DONE]`` mean the connection broke: ``APIConnectionError``.

``read_flow`` is the rest of a stream after ``flow.stream_flow`` opened it: it yields the
chunks (each folded into the accumulator first) and the actions for the driver
(``sdk._streaming``) to perform: ``ReadChunk``, and the ``Close``/``Sleep``/``Send`` of
resuming a broken stream whose output is reproducible (``resume``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx
import pydantic

from .._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    status_error_class,
)
from .actions import Action, Close, ReadChunk
from .resume import Diverged, Replay
from .sse import ServerSentEvent, SSEDecoder

if TYPE_CHECKING:
    from ..types import APIObject
    from .flow import StreamStart

__all__ = ["ChunkDecoder", "read_flow", "stream_error"]

T = TypeVar("T")
ChunkT = TypeVar("ChunkT", bound="APIObject")

DONE = "[DONE]"

# error "type" strings used by OpenAI, vLLM, llama.cpp and TGI -> the HTTP status they mean
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "BadRequestError": 400,
    "exceed_context_size_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "NotFoundError": 404,
    "rate_limit_error": 429,
    "overloaded": 429,
    "overloaded_error": 429,
    "unavailable_error": 503,
}


def stream_error(payload: object, response: httpx.Response) -> APIStatusError:
    """The typed error for an error event received inside a (2xx) stream."""
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    fields: dict[str, Any] = error if isinstance(error, dict) else {"message": str(error)}
    status = _status_of(fields)
    message = str(fields.get("message") or "error event in stream")
    return status_error_class(status)(
        f"Error code: {status} - {message} (sent inside the stream)",
        response=response,
        status_code=status,
        body={"error": fields},
    )


def _status_of(fields: dict[str, Any]) -> int:
    code = fields.get("code")
    if isinstance(code, int) and 400 <= code <= 599:
        return code
    return _TYPE_STATUS.get(str(fields.get("type")), 500)


class ChunkDecoder(Generic[T]):
    """Push-style: bytes of a 2xx event stream in, parsed chunks out.

    ``parse`` turns one event's JSON into a chunk (a pydantic ``model_validate``).
    """

    def __init__(self, parse: Callable[[Any], T], response: httpx.Response) -> None:
        self._parse = parse
        self._response = response
        self._sse = SSEDecoder()
        self.done = False  # has [DONE] arrived?
        self._error: APIStatusError | None = None  # an error event behind chunks not yet handed out

    def feed(self, data: bytes) -> list[T]:
        """Decode the next bytes; raises the typed error if they contain an error event.

        Chunks that arrived in the same bytes before an error event are returned first; the
        error is raised by the next ``feed`` or ``finish``.
        """
        self._raise_pending()
        chunks: list[T] = []
        for event in self._sse.decode(data):
            if self.done:
                break
            try:
                chunk = self._chunk(event)
            except APIStatusError as exc:
                if not chunks:
                    raise
                self._error = exc
                break
            if chunk is not None:
                chunks.append(chunk)
        return chunks

    def finish(self) -> None:
        """The byte stream ended: fine after ``[DONE]``, a broken connection before it."""
        self._raise_pending()
        self._sse.flush()
        if not self.done:
            raise APIConnectionError(
                "the stream ended before [DONE]: the connection closed early",
                request=self._response.request,
            )

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _chunk(self, event: ServerSentEvent) -> T | None:
        if event.data.strip() == DONE:
            self.done = True
            return None
        if event.event not in ("message", "error"):
            return None
        try:
            payload = json.loads(event.data)
        except ValueError:
            raise APIResponseValidationError(
                f"stream event is not JSON: {event.data[:200]!r}",
                response=self._response,
                body=event.data,
            ) from None
        if event.event == "error" or (isinstance(payload, dict) and payload.get("error")):
            raise stream_error(payload, self._response)
        try:
            return self._parse(payload)
        except pydantic.ValidationError as exc:
            raise APIResponseValidationError(
                f"unexpected stream chunk shape: {exc}", response=self._response, body=payload
            ) from None


def read_flow(
    start: StreamStart[ChunkT, Any],
) -> Generator[ChunkT | Action, Any, None]:
    """The chunks of an opened stream, interleaved with the actions that fetch them.

    The driver performs each action (a ``ReadChunk``; resuming adds ``Close``, ``Sleep`` and
    ``Send``), sends back its result (``None`` for a ``ReadChunk`` at the end of the body) or
    throws its ``APIError`` in, and hands every chunk to its caller. Errors (an error event,
    a body that ends before ``[DONE]``) are raised from here, unless the stream can be
    resumed (``start.resume``, see ``resume``): then the replay's first chunks are checked
    against the delivered ones and skipped, and the caller sees one stream.
    """
    replay, current = Replay(enabled=start.resume is not None), start
    cut: APIError | None = None  # the error that broke the stream, while resuming it
    while True:
        try:
            yield from _read(current, start, replay)
            return
        except Diverged:
            assert cut is not None  # only a replay diverges
            yield Close(current.response)
            cut.add_note("not resumed: the replay differed from the chunks already delivered")
            raise cut from cut.__cause__
        except APIError as error:
            if start.resume is None:
                raise
            cut = error
        current = yield from start.resume.again(current, cut, len(replay.delivered))
        replay.restart()


def _read(
    current: StreamStart[ChunkT, Any], start: StreamStart[ChunkT, Any], replay: Replay
) -> Generator[ChunkT | ReadChunk[Any], bytes | None, None]:
    """One response's chunks, each folded into ``start``'s accumulator and shown to its
    observers unless it repeats a delivered one."""
    decoder, chunks = current.decoder, current.first
    while True:
        for chunk in chunks:
            if replay.deliver(chunk):
                start.accumulator.add(chunk)
                for observer in start.observers:
                    observer.chunk(chunk)
                yield chunk
        if decoder.done:
            if replay.behind():
                raise Diverged  # the replay ended before reaching the delivered chunks
            return
        data = yield ReadChunk(current.response, current.chunks)
        if data is None:
            break
        chunks = decoder.feed(data)
    decoder.finish()  # raises: the body ended before [DONE], the connection broke
