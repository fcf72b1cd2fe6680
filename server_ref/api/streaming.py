"""One streaming loop for chat and completions; the chunk shapes are the writer's business."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from sdk.types import CompletionUsage
from server_ref.api.generation import ChoiceState, Generation
from server_ref.api.sse import DONE_EVENT
from server_ref.engine.types import TokenLogprob


class ChunkWriter(Protocol):
    """Encodes the events of one stream (each method returns one encoded SSE event)."""

    def start(self, choice: ChoiceState) -> bytes | None: ...

    def delta(self, choice: ChoiceState, text: str, logprobs: list[TokenLogprob]) -> bytes:
        """The events for new text (possibly none, ``b""``: the logprobs then wait)."""
        ...

    def finish(self, choice: ChoiceState, logprobs: list[TokenLogprob]) -> bytes: ...

    def usage(self, usage: CompletionUsage) -> bytes | None: ...


async def stream_events(gen: Generation, writer: ChunkWriter) -> AsyncIterator[bytes]:
    """start chunks, text deltas, one finish chunk per choice, the usage chunk, ``[DONE]``.

    A step that produced tokens but no text yet (a held-back partial character or possible
    stop string) emits nothing: its logprobs wait for the next chunk that has text, so no
    empty content delta is ever sent. Errors propagate to ``SSEResponse``, which sends them
    as an error event.
    """
    for choice in gen.choices:
        event = writer.start(choice)
        if event is not None:
            yield event
    pending: dict[int, list[TokenLogprob]] = {c.index: [] for c in gen.choices}
    async for choice, out in gen.outputs():
        waiting = pending[choice.index]
        if out.logprobs:
            waiting.extend(out.logprobs)
        if out.text:
            event = writer.delta(choice, out.text, waiting)
            if event:  # a tool-call reply's JSON syntax alone shows as nothing
                pending[choice.index] = []
                yield event
        if out.finished:
            yield writer.finish(choice, pending.pop(choice.index, []))
    usage = writer.usage(gen.usage())
    if usage is not None:
        yield usage
    yield DONE_EVENT
