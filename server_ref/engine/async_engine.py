"""``AsyncEngine``: the engine loop in one background thread, fed and read through asyncio.

The HTTP layer calls ``add_request`` from its event loop and iterates the returned stream; the
thread takes new requests and aborts from an inbox at the top of every step and hands each
``StepOutput`` back to the caller's loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator

from server_ref.engine.engine import LLMEngine
from server_ref.engine.types import (
    ConstraintSpec,
    EngineDeadError,
    EngineStats,
    QueueFullError,
    SamplingParams,
    StepOutput,
)

log = logging.getLogger("server_ref.engine")


class AsyncEngine:
    """Runs ``LLMEngine`` in a background thread; asyncio callers stream its outputs.

    Implements ``server_ref.engine.types.EngineClient``. The waiting-queue bound is checked on
    the caller's thread without touching the scheduler's queue: ``Scheduler.queue_room`` (a
    count the engine thread republishes) less the requests still in the inbox or being handed
    over by the thread.
    """

    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self.model_info = engine.model_info
        self.tokenizer = engine.tokenizer
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._new: list[tuple[str, list[int], SamplingParams]] = []
        self._in_transit = 0  # taken from _new by the thread, not yet in the scheduler
        self._aborts: set[str] = set()
        self._queues: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue[StepOutput]]] = {}
        self._stop = False
        self.dead_reason: str | None = None
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
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
        return EngineStats(s.running, s.waiting + pending, s.kv_blocks_used, s.kv_blocks_total)

    def add_request(
        self, request_id: str, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[StepOutput]:
        if self.dead_reason is not None:
            raise EngineDeadError(self.dead_reason)
        self.engine.check_request(prompt_ids, params)
        queue: asyncio.Queue[StepOutput] = asyncio.Queue()
        with self._lock:
            if len(self._new) + self._in_transit >= self.engine.scheduler.queue_room():
                raise QueueFullError()
            self._queues[request_id] = (asyncio.get_running_loop(), queue)
            self._new.append((request_id, prompt_ids, params))
        self._wake.set()
        return self._stream(request_id, queue)

    async def _stream(
        self, request_id: str, queue: asyncio.Queue[StepOutput]
    ) -> AsyncIterator[StepOutput]:
        done = False
        try:
            while not done:
                out = await queue.get()
                done = out.finished
                yield out
        finally:
            if not done:
                self.abort(request_id)

    def check_constraint(self, spec: ConstraintSpec) -> None:
        self.engine.check_constraint(spec)  # the compiler is thread-safe

    def abort(self, request_id: str) -> None:
        with self._lock:
            if request_id in self._queues:
                self._aborts.add(request_id)
        self._wake.set()

    # -- the background thread ----------------------------------------------------------------

    def _deliver(self, out: StepOutput) -> None:
        with self._lock:
            entry = self._queues.get(out.request_id)
            if entry is not None and out.finished:
                del self._queues[out.request_id]
        if entry is not None:
            loop, queue = entry
            # RuntimeError: the caller's loop is closed, nobody is listening any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, out)

    def _take_inbox(self) -> tuple[list[tuple[str, list[int], SamplingParams]], set[str]]:
        with self._lock:
            new, self._new = self._new, []
            aborts, self._aborts = self._aborts, set()
            self._in_transit = len(new)
        return new, aborts

    def _loop(self) -> None:
        while not self._stop:
            new, aborts = self._take_inbox()
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
            if not self.engine.has_work():
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            try:
                outputs = self.engine.step()
            except Exception as e:  # a bug or a device failure: fail everyone, go unhealthy
                log.exception("engine step failed")
                self.dead_reason = f"engine failure: {type(e).__name__}: {e}"
                self._fail_all(self.dead_reason)
                return
            for out in outputs:
                self._deliver(out)
        self._fail_all("the server is shutting down")

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            rids = list(self._queues)
        for rid in rids:
            self.engine.abort(rid)
            self._deliver(_failed(rid, 0, reason))


def _failed(request_id: str, prompt_tokens: int, message: str) -> StepOutput:
    return StepOutput(
        request_id=request_id,
        text="",
        token_ids=[],
        logprobs=None,
        finished=True,
        finish_reason="error",
        prompt_tokens=prompt_tokens,
        completion_tokens=0,
        error=message,
    )
