"""``AsyncEngine``: the engine loop in one background thread, fed and read through asyncio.

The HTTP layer calls ``add_request`` from its event loop and iterates the returned stream; the
thread takes new requests and aborts from an inbox at the top of every step and hands each
``StepOutput`` back to the caller's loop with ``call_soon_threadsafe``.

Two bounds keep one request from hurting the others:

* **A reader that stops reading** never slows the thread (handing over never blocks), and
  cannot make its request's buffer grow without bound either: once ``max_pending_outputs``
  outputs wait unread, the request is aborted as a slow consumer (its compute and KV blocks go
  to the others) and one last output saying so is queued.
* **Failures.** ``LLMEngine.step`` charges a failure to the request or the batch it belongs
  to and carries on. Only ``MAX_BATCH_FAILURES_IN_A_ROW`` failed batches in a row, or an
  exception out of the engine's own recovery, mean the engine cannot serve (a lost device
  fails every batch): it then fails everything and ``is_ready()`` turns false for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

from server_ref.engine.engine import LLMEngine
from server_ref.engine.memory import Trimmer
from server_ref.engine.types import (
    ConstraintSpec,
    EngineDeadError,
    EngineStats,
    FinishReason,
    QueueFullError,
    SamplingParams,
    StepOutput,
)

log = logging.getLogger("server_ref.engine")

# Undelivered outputs one request may have before it is aborted as a slow consumer. At one
# output per token this is hundreds of tokens nobody read, on top of the socket buffers.
MAX_PENDING_OUTPUTS = 512
# A forward pass that failed once may be a passing condition (memory for one large batch);
# failing this many batches in a row, with no step working in between, means it is not.
MAX_BATCH_FAILURES_IN_A_ROW = 3
SLOW_CONSUMER = (
    "The client did not read the stream: {pending} outputs were waiting unread, so the "
    "server stopped generating this request."
)
SHUTTING_DOWN = "The server is shutting down; the request was stopped before it finished."

_NewRequest = tuple[str, list[int], SamplingParams]  # request id, prompt ids, sampling


@dataclass
class _Outbox:
    """Where one request's outputs go: a queue on the caller's event loop."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[StepOutput]
    delivered: int = 0  # written only by the engine thread
    taken: int = 0  # written only by the reader; a stale read just delays the abort a step


class AsyncEngine:
    """Runs ``LLMEngine`` in a background thread; asyncio callers stream its outputs.

    Implements ``server_ref.engine.types.EngineClient``. The waiting-queue bound is checked on
    the caller's thread without touching the scheduler's queue: ``Scheduler.queue_room`` (a
    count the engine thread republishes) less the requests still in the inbox or being handed
    over by the thread.

    >>> engine = AsyncEngine(build_engine("model.gguf"))  # doctest: +SKIP
    >>> engine.start()  # doctest: +SKIP
    >>> async for out in engine.add_request("r1", [1, 2, 3], params): ...  # doctest: +SKIP
    """

    def __init__(
        self, engine: LLMEngine, *, max_pending_outputs: int = MAX_PENDING_OUTPUTS
    ) -> None:
        self.engine = engine
        self.model_info = engine.model_info
        self.tokenizer = engine.tokenizer
        self.max_pending_outputs = max_pending_outputs
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._new: list[_NewRequest] = []
        self._in_transit = 0  # taken from _new by the thread, not yet in the scheduler
        self._aborts: set[str] = set()
        self._abort_all: str | None = None  # abort every request, with this reason
        self._outboxes: dict[str, _Outbox] = {}
        self._stop = False
        self.dead_reason: str | None = None
        self._trimmer = Trimmer()  # freed memory back to the OS, between steps
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        """Stop the thread; what still runs ends with ``SHUTTING_DOWN`` (idempotent)."""
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def is_ready(self) -> bool:
        return self._thread.is_alive() and self.dead_reason is None

    def stats(self) -> EngineStats:
        s = self.engine.stats()
        with self._lock:
            pending = len(self._new)
        return dataclasses.replace(s, waiting=s.waiting + pending)

    def add_request(
        self, request_id: str, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[StepOutput]:
        if self.dead_reason is not None:
            raise EngineDeadError(self.dead_reason)
        self.engine.check_request(prompt_ids, params)
        outbox = _Outbox(asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            if len(self._new) + self._in_transit >= self.engine.scheduler.queue_room():
                raise QueueFullError()
            self._outboxes[request_id] = outbox
            self._new.append((request_id, prompt_ids, params))
        self._wake.set()
        return self._stream(request_id, outbox)

    async def _stream(self, request_id: str, outbox: _Outbox) -> AsyncIterator[StepOutput]:
        done = False
        try:
            while not done:
                out = await outbox.queue.get()
                outbox.taken += 1
                done = out.finished
                yield out
        finally:
            if not done:
                self.abort(request_id)

    def check_constraint(self, spec: ConstraintSpec) -> None:
        self.engine.check_constraint(spec)  # the compiler is thread-safe

    def abort(self, request_id: str) -> None:
        with self._lock:
            if request_id in self._outboxes:
                self._aborts.add(request_id)
        self._wake.set()

    def abort_all(self, reason: str = SHUTTING_DOWN) -> None:
        """Stop every request now (thread-safe); each ends with ``reason`` as its error.

        >>> engine.abort_all("The server is shutting down.")  # doctest: +SKIP
        """
        with self._lock:
            self._abort_all = reason
        self._wake.set()

    # -- the background thread ----------------------------------------------------------------

    def _deliver(self, out: StepOutput) -> None:
        with self._lock:
            outbox = self._outboxes.get(out.request_id)
            if outbox is None:
                return
            if not out.finished and outbox.delivered - outbox.taken >= self.max_pending_outputs:
                reason = SLOW_CONSUMER.format(pending=outbox.delivered - outbox.taken)
                out = self.engine.abort(out.request_id, reason) or out
                log.warning("request %s aborted: its client stopped reading", out.request_id)
            if out.finished:
                del self._outboxes[out.request_id]
            outbox.delivered += 1
        # RuntimeError: the caller's loop is closed, nobody is listening any more
        with contextlib.suppress(RuntimeError):
            outbox.loop.call_soon_threadsafe(outbox.queue.put_nowait, out)

    def _take_inbox(self) -> tuple[list[_NewRequest], set[str], str | None]:
        with self._lock:
            new, self._new = self._new, []
            aborts, self._aborts = self._aborts, set()
            abort_all, self._abort_all = self._abort_all, None
            self._in_transit = len(new)
        return new, aborts, abort_all

    def _loop(self) -> None:
        while not self._stop:
            new, aborts, abort_all = self._take_inbox()
            for rid, prompt, params in new:
                try:
                    self.engine.add_request(rid, prompt, params)
                except (ValueError, QueueFullError) as e:
                    self._deliver(_failed(rid, len(prompt), str(e)))
            if new:
                with self._lock:
                    self._in_transit = 0
            for rid in aborts:
                out = self.engine.abort(rid)
                if out is not None:
                    self._deliver(out)
            if abort_all is not None:
                self._end_all(abort_all, dead=False)
            if not self.engine.has_work():
                self._trimmer.on_idle()
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            try:
                outputs = self.engine.step()
            except Exception as e:  # the engine's own recovery failed: stop serving
                log.exception("engine step failed")
                self._die(f"engine failure: {type(e).__name__}: {e}")
                return
            if self.engine.batch_failures_in_a_row >= MAX_BATCH_FAILURES_IN_A_ROW:
                # set before the failures go out: whoever sees one sees the engine dead
                self.dead_reason = f"{MAX_BATCH_FAILURES_IN_A_ROW} batches in a row failed"
            for out in outputs:
                self._deliver(out)
            self._trimmer.after_step()
            if self.dead_reason is not None:
                self._die(self.dead_reason)
                return
        self._end_all(SHUTTING_DOWN, dead=False)

    def _die(self, reason: str) -> None:
        log.error("the engine stops serving: %s", reason)
        self.dead_reason = reason
        self._end_all(reason, dead=True)

    def _end_all(self, reason: str, *, dead: bool) -> None:
        """End every request: as failed (500) when the engine died, else as aborted by the
        server (503, retry elsewhere)."""
        with self._lock:
            rids = list(self._outboxes)
            self._new = []  # requests not admitted yet end here too, instead of running unread
        for rid in rids:
            out = self.engine.abort(rid, reason)
            if dead or out is None:  # None: still in the inbox, never reached the scheduler
                out = _failed(rid, 0, reason, reason="error" if dead else "abort")
            self._deliver(out)


def _failed(
    request_id: str, prompt_tokens: int, message: str, reason: FinishReason = "error"
) -> StepOutput:
    return StepOutput(
        request_id=request_id,
        text="",
        token_ids=[],
        logprobs=None,
        finished=True,
        finish_reason=reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=0,
        error=message,
    )
