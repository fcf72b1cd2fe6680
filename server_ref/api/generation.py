"""The engine requests behind one API request: submit, merge, account, and always clean up.

One API request becomes ``len(prompts) * n`` engine requests (one per choice). ``Generation``
submits them, merges their outputs into one stream of ``(choice, output)`` pairs, keeps each
choice's running state, feeds the metrics, and on exit aborts whatever has not finished and
closes every engine iterator: a client that goes away never leaves work running.

Engine failures are turned into ``APIError``s here, in one place::

    QueueFullError  -> 429 + Retry-After     (at submission)
    ValueError      -> 400                   (at submission: a prompt the engine can never run)
    EngineDeadError -> 500                   (at submission or mid-stream)
    finish "error"  -> 500, output.error     (mid-stream: this request or its batch failed)
    finish "abort"  -> 503 + Retry-After     (mid-stream: the server stopped it, output.error
                                              says why: shutting down, client not reading)
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
from starlette.requests import ClientDisconnect, Request

from sdk.types import CompletionUsage
from server_ref.api.errors import (
    APIError,
    BadRequestError,
    OverloadedError,
    ServiceUnavailableError,
)
from server_ref.api.metrics import Metrics, RequestMetrics
from server_ref.engine.types import (
    EngineClient,
    EngineDeadError,
    QueueFullError,
    SamplingParams,
    StepOutput,
    TokenLogprob,
)

logger = logging.getLogger("server_ref.api")
T = TypeVar("T")


@dataclass
class ChoiceSpec:
    """What to run for one choice."""

    index: int
    prompt_ids: list[int]
    params: SamplingParams
    prompt_index: int = 0  # which prompt of a batched /v1/completions request


@dataclass
class ChoiceState:
    """One choice's progress, updated as outputs arrive."""

    index: int
    request_id: str
    prompt_tokens: int
    params: SamplingParams
    prompt_index: int = 0
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    completion_tokens: int = 0
    finish_reason: str | None = None
    tracker: RequestMetrics | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


class Generation:
    """The engine requests of one API request.

    ``close()`` must run whatever happens (a streaming response hands it to ``SSEResponse``
    as ``on_close``, which outlives the route function, so this is not a context manager):

    >>> gen = Generation(engine, metrics, "chatcmpl-1", specs, retry_after=1.0)  # doctest: +SKIP
    >>> gen.submit()  # doctest: +SKIP
    >>> try:
    ...     async for choice, output in gen.outputs(): ...
    ... finally:
    ...     await gen.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        engine: EngineClient,
        metrics: Metrics,
        base_id: str,
        specs: Sequence[ChoiceSpec],
        *,
        retry_after: float,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.choices = [
            ChoiceState(
                s.index, f"{base_id}-{s.index}", len(s.prompt_ids), s.params, s.prompt_index
            )
            for s in specs
        ]
        self._specs = list(specs)
        self._retry_after = retry_after
        self._streams: list[AsyncIterator[StepOutput]] = []
        self._closed = False

    def submit(self) -> None:
        """Add every choice to the engine; on failure, abort those already added."""
        if not self.engine.is_ready():
            raise ServiceUnavailableError("The model is not ready yet; try again shortly.")
        try:
            for spec, choice in zip(self._specs, self.choices, strict=True):
                stream = self.engine.add_request(choice.request_id, spec.prompt_ids, spec.params)
                self._streams.append(stream)
                choice.tracker = self.metrics.track(choice.prompt_tokens)
        except BaseException as exc:
            self._abort_unfinished()
            if isinstance(exc, QueueFullError):
                raise OverloadedError(
                    "The server is overloaded: its request queue is full. Retry later.",
                    retry_after=max(exc.retry_after, self._retry_after),
                ) from None
            if isinstance(exc, EngineDeadError):
                raise APIError(f"The inference engine is not running: {exc}") from None
            if isinstance(exc, ValueError):
                raise BadRequestError(f"The engine rejected the request: {exc}") from None
            raise

    async def outputs(self) -> AsyncIterator[tuple[ChoiceState, StepOutput]]:
        """Outputs of all choices as they come, each already folded into its ``ChoiceState``."""
        try:
            async for i, out in _merge(self._streams):
                choice = self.choices[i]
                if choice.tracker is not None:
                    choice.tracker.observe(out)
                if out.finish_reason == "error":
                    self._finish(choice, "error")
                    raise APIError(out.error or "The inference engine failed this request.")
                choice.text.append(out.text)
                if out.logprobs:
                    choice.logprobs.extend(out.logprobs)
                choice.completion_tokens = out.completion_tokens
                choice.prompt_tokens = out.prompt_tokens or choice.prompt_tokens
                if out.finished:
                    if out.finish_reason == "abort":
                        # We abort only on disconnect, after which nobody reads; this is the
                        # server stopping the request (shutdown, a client that stopped reading).
                        self._finish(choice, "abort")
                        raise ServiceUnavailableError(
                            out.error or "The request was aborted by the server.",
                            headers={"Retry-After": str(max(1, math.ceil(self._retry_after)))},
                        )
                    self._finish(choice, out.finish_reason or "stop")
                yield choice, out
        except Exception as exc:
            raise map_engine_error(exc) from None

    async def drain(self) -> None:
        """Run every choice to its end (non-streaming responses)."""
        async for _ in self.outputs():
            pass

    def usage(self) -> CompletionUsage:
        """OpenAI's accounting: each prompt counted once (not once per choice), every
        generated token counted."""
        prompts: dict[int, int] = {}
        for c in self.choices:
            prompts.setdefault(c.prompt_index, c.prompt_tokens)
        prompt = sum(prompts.values())
        completion = sum(c.completion_tokens for c in self.choices)
        return CompletionUsage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )

    def _finish(self, choice: ChoiceState, reason: str) -> None:
        choice.finish_reason = reason
        if choice.tracker is not None:
            choice.tracker.finish(reason)

    def _abort_unfinished(self) -> None:
        for choice, _ in zip(self.choices, self._streams, strict=False):
            if not choice.finished:
                self.engine.abort(choice.request_id)
                self._finish(choice, "abort")

    async def close(self) -> None:
        """Abort unfinished choices and close every engine iterator (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._abort_unfinished()
        finally:
            for stream in self._streams:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except Exception:
                        logger.exception("closing an engine stream failed")


async def _merge(
    streams: Sequence[AsyncIterator[StepOutput]],
) -> AsyncIterator[tuple[int, StepOutput]]:
    """Interleave several engine streams, tagging each output with its stream's index."""
    if len(streams) == 1:
        async for out in streams[0]:
            yield 0, out
        return
    # Bounded, so a reader that stops reading leaves the outputs in the engine's queues, where
    # AsyncEngine notices the slow consumer, instead of here, where nothing would.
    queue: asyncio.Queue[tuple[int, StepOutput | BaseException | None]] = asyncio.Queue(
        maxsize=len(streams)
    )

    async def pump(i: int, stream: AsyncIterator[StepOutput]) -> None:
        try:
            async for out in stream:
                await queue.put((i, out))
            await queue.put((i, None))
        except Exception as exc:
            await queue.put((i, exc))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            i, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for task in tasks:
            task.cancel()
        # Shielded: under a cancelled anyio scope (client gone) every await is cancelled
        # again, and the engine iterators must be idle before Generation.close() closes them.
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*tasks, return_exceptions=True)


def map_engine_error(exc: Exception) -> APIError:
    """An engine exception raised while iterating, as the error the client sees."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, EngineDeadError):
        return APIError(f"The inference engine failed: {exc}")
    logger.error("engine stream raised %s", type(exc).__name__, exc_info=exc)
    return APIError("Internal server error during generation.")


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run ``work`` while watching the client; if it disconnects first, cancel ``work`` (its
    cleanup aborts the engine requests) and raise ``ClientDisconnect``.

    Non-streaming requests need this: without it a vanished client's generation runs to
    the end (vLLM's ``with_cancellation``; llama-cpp-python checks only before inference).
    """

    async def wait_disconnect() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_disconnect())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise ClientDisconnect()
    finally:
        for t in (task, watcher):
            t.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
