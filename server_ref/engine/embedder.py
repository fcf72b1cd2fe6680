"""The embedding service: requests from any thread or event loop, batched on one worker thread.

``submit`` checks a request (counts, types, token ids, ``dimensions``) and queues it, raising
the typed errors of ``embedding_types`` at once; the worker thread tokenizes what arrived,
pools the inputs of all waiting requests, runs them through the model in padding-aware
batches (``embedding_batches``) and resolves each request's future when its last input is
done. ``embed`` is the same for asyncio callers (the HTTP route)::

    embedder = build_embedder(path, model_id="all-minilm-l6-v2")  # engine.build_embedder
    embedder.start()
    result = await embedder.embed(["a text", "another"])  # EmbeddingResult
    embedder.shutdown()

Over-long inputs are truncated to the model's limit by default (``truncate=True``), as
sentence-transformers does: the model's limit is small (256 tokens for all-MiniLM-L6-v2, 32x
below OpenAI's 8191), so clients written for OpenAI routinely send longer paragraphs and
expect an answer. The cut is visible (``EmbeddingResult.truncated``, and ``prompt_tokens``
counts what was embedded); ``truncate=False`` makes an over-long input an
``InputTooLongError`` (a 400, as OpenAI, vLLM and text-embeddings-inference answer by default).
Token-id inputs are embedded as given (vLLM's convention: ids from ``/tokenize``, which include
[CLS] and [SEP], give the text's embedding) and truncated to their first ``max_tokens``.

Sharing the machine with chat decoding: the worker is its own thread and torch releases the
GIL inside its kernels, so a decode step never waits for a whole embedding request, only
competes for the same cores (on CUDA, the same GPU; the worker issues its work on its own
stream). On CPU each pass runs on a thread of its own that ends with it (``threads`` says
why: an idle OpenMP team would slow every decode step afterwards).
``EmbedderLimits.max_batch_tokens`` bounds one pass, and so the longest stretch
during which decoding runs on shared cores; the cost is that a busy embedder slows decode
steps by up to the share of the cores it takes, it never starves them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeGuard

import numpy as np
import numpy.typing as npt
import torch

from server_ref.engine.embedding_batches import next_batch
from server_ref.engine.embedding_types import (
    DimensionsError,
    EmbedderClosedError,
    EmbedderLimits,
    EmbedderOverloadedError,
    EmbeddingModelInfo,
    EmbeddingResult,
    EmptyInputError,
    InputTooLongError,
    InputTypeError,
    TokenIdError,
    TooManyInputsError,
)
from server_ref.engine.threads import in_passing_thread
from server_ref.loading.hf_tokenizer import Encoded, HFTokenizer
from server_ref.models.bert import SentenceBert

__all__ = ["Embedder"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Request:
    texts: list[str]  # one of texts and id_lists is empty
    id_lists: list[list[int]]
    dimensions: int | None
    truncate: bool
    future: concurrent.futures.Future[EmbeddingResult] = field(
        default_factory=concurrent.futures.Future
    )
    encoded: list[Encoded] = field(default_factory=list)
    vectors: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    remaining: int = 0


@dataclass(eq=False)
class _Item:
    request: _Request
    index: int

    @property
    def ids(self) -> list[int]:
        return self.request.encoded[self.index].ids


_STOP = object()


class Embedder:
    """Batches embedding requests from many callers through one ``SentenceBert``."""

    def __init__(
        self,
        model: SentenceBert,
        tokenizer: HFTokenizer,
        info: EmbeddingModelInfo,
        limits: EmbedderLimits | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.limits = limits or EmbedderLimits()
        if self.limits.max_batch_tokens < info.max_tokens:
            raise ValueError("max_batch_tokens must hold one input of the model's max_tokens")
        self._inbox: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._queued = 0  # inputs submitted and not finished; guarded by _lock
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name="embedder", daemon=True)
            self._thread.start()

    def shutdown(self, timeout: float | None = 10.0) -> None:
        """Stop the worker after the pass it is running; fail whatever still waits."""
        with self._lock:
            self._closed = True
        self._inbox.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)

    def is_ready(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._closed

    # -- requests ------------------------------------------------------------------------------

    def submit(
        self,
        inputs: Sequence[str] | Sequence[Sequence[int]],
        *,
        dimensions: int | None = None,
        truncate: bool = True,
    ) -> concurrent.futures.Future[EmbeddingResult]:
        """Queue one request (``embedding_types.split_inputs`` makes OpenAI's ``input`` a
        list); checks it first and raises the typed errors of ``embedding_types``.

        >>> embedder.submit(["hello"]).result().vectors.shape  # doctest: +SKIP
        (1, 384)
        """
        texts, id_lists = self._check_inputs(inputs)
        request = _Request(texts, id_lists, self._check_dimensions(dimensions), truncate)
        n = len(texts) + len(id_lists)
        with self._lock:
            if self._closed or self._thread is None:
                raise EmbedderClosedError("the embedding model is not running")
            if self._queued + n > self.limits.max_queued_inputs:
                raise EmbedderOverloadedError(
                    f"the embedding queue is full ({self._queued} inputs waiting); retry later"
                )
            self._queued += n
            # under the lock: once the worker has set _closed and drained the inbox, nothing
            # can be put there to wait forever
            self._inbox.put(request)
        request.future.add_done_callback(lambda _: self._release(n))
        return request.future

    async def embed(
        self,
        inputs: Sequence[str] | Sequence[Sequence[int]],
        *,
        dimensions: int | None = None,
        truncate: bool = True,
    ) -> EmbeddingResult:
        """``submit`` for asyncio callers. A cancelled caller (a client that disconnected)
        cancels the request: the worker drops its inputs that have not run yet."""
        future = self.submit(inputs, dimensions=dimensions, truncate=truncate)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise

    def _release(self, n: int) -> None:
        with self._lock:
            self._queued -= n

    def _check_inputs(
        self, inputs: Sequence[str] | Sequence[Sequence[int]]
    ) -> tuple[list[str], list[list[int]]]:
        items = [inputs] if isinstance(inputs, str) else list(inputs)  # a str is a Sequence
        if not items:
            raise EmptyInputError("input must not be an empty list")
        if len(items) > self.limits.max_inputs:
            raise TooManyInputsError(
                f"input has {len(items)} items; at most {self.limits.max_inputs} per request"
            )
        texts = [x for x in items if isinstance(x, str)]
        id_lists = [list(x) for x in items if not isinstance(x, str) and _all_ids(x)]
        if len(texts) + len(id_lists) != len(items) or (texts and id_lists):
            raise InputTypeError(
                "input must be strings or lists of token ids (integers), not a mix or other types"
            )
        for i, item in enumerate(texts or id_lists):
            if len(item) == 0:
                what = "string" if texts else "list of token ids"
                raise EmptyInputError(f"input[{i}] is an empty {what}")
        for i, ids in enumerate(id_lists):
            bad = next((t for t in ids if not 0 <= t < self.info.vocab_size), None)
            if bad is not None:
                raise TokenIdError(
                    f"input[{i}] has token id {bad}, outside 0..{self.info.vocab_size - 1}"
                )
        return texts, id_lists

    def _check_dimensions(self, dimensions: int | None) -> int | None:
        full, model = self.info.dimensions, self.info.id
        if dimensions is None or dimensions == full:
            return None
        if isinstance(dimensions, bool) or not isinstance(dimensions, int):
            raise DimensionsError(f"dimensions must be an integer, got {dimensions!r}")
        if not 1 <= dimensions <= full:
            raise DimensionsError(f"dimensions must be between 1 and {full} for '{model}'")
        if not self.info.matryoshka_dims:
            raise DimensionsError(
                f"'{model}' gives {full} dimensions only: it was not trained for shortened "
                "(Matryoshka) embeddings, so a cut vector would lose meaning"
            )
        if dimensions not in self.info.matryoshka_dims:
            sizes = ", ".join(map(str, (*self.info.matryoshka_dims, full)))
            raise DimensionsError(f"'{model}' supports dimensions {sizes}; got {dimensions}")
        return dimensions

    # -- the worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        pending: list[_Item] = []  # inputs of all running requests, in arrival order
        on_gpu = self.model.device.type == "cuda"
        # its own CUDA stream, so chat decoding's kernels need not queue behind a whole pass
        stream = torch.cuda.Stream(self.model.device) if on_gpu else None  # type: ignore[no-untyped-call]
        try:
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                while self._take(pending, block=not pending):
                    pending[:] = [it for it in pending if not it.request.future.done()]
                    if pending:
                        self._step(pending)
        except BaseException:  # a bug: nobody may wait forever on a dead worker
            log.exception("the embedding worker failed")
            raise
        finally:
            with self._lock:
                self._closed = True
            closed = EmbedderClosedError("the embedding model was shut down")
            for item in pending:
                _fail(item.request, closed)
            with contextlib.suppress(queue.Empty):
                while True:
                    left = self._inbox.get_nowait()
                    if isinstance(left, _Request):
                        _fail(left, closed)

    def _take(self, pending: list[_Item], *, block: bool) -> bool:
        """Move newly arrived requests into ``pending`` (tokenized); False once stopped."""
        try:
            got = self._inbox.get() if block else self._inbox.get_nowait()
        except queue.Empty:
            return True
        while True:
            if got is _STOP:
                return False
            if isinstance(got, _Request) and not got.future.done():
                try:
                    self._encode(got)
                except Exception as exc:  # InputTooLongError, or the tokenizer failing
                    _fail(got, exc)
                else:
                    pending.extend(_Item(got, i) for i in range(len(got.encoded)))
            try:
                got = self._inbox.get_nowait()
            except queue.Empty:
                return True

    def _encode(self, request: _Request) -> None:
        limit = self.info.max_tokens
        if request.texts:
            encoded = self.tokenizer.encode_batch(request.texts)
        else:
            encoded = [Encoded(ids[:limit], len(ids)) for ids in request.id_lists]
        if not request.truncate:
            for i, enc in enumerate(encoded):
                if enc.truncated:
                    raise InputTooLongError(
                        f"input[{i}] has {enc.n_tokens} tokens, more than the {limit} that "
                        f"'{self.info.id}' accepts ([CLS] and [SEP] included); shorten it, "
                        "or allow truncation"
                    )
        request.encoded = encoded
        request.vectors = np.empty((len(encoded), self.info.dimensions), np.float32)
        request.remaining = len(encoded)

    def _step(self, pending: list[_Item]) -> None:
        """Run one padded batch out of ``pending`` and remove its items."""
        lengths = [len(item.ids) for item in pending]
        chosen = next_batch(
            lengths,
            max_tokens=self.limits.max_batch_tokens,
            max_inputs=self.limits.max_batch_inputs,
        )
        batch = [pending[i] for i in chosen]
        for i in sorted(chosen, reverse=True):
            del pending[i]
        try:
            vectors = self._pass([item.ids for item in batch]).numpy()
        except Exception as exc:  # a bug or the device failing: the requests get a 500
            log.exception("embedding pass failed")
            for request in {item.request for item in batch}:
                _fail(request, exc)
            return
        for item, vector in zip(batch, vectors, strict=True):
            request = item.request
            request.vectors[item.index] = vector
            request.remaining -= 1
            if request.remaining == 0:
                self._finish(request)

    def _pass(self, ids: list[list[int]]) -> torch.Tensor:
        if self.model.device.type == "cuda":  # the worker's stream is this thread's
            return self.model.embed(ids)
        # on CPU, a thread per pass: an OpenMP team left on this idle worker would keep the
        # chat engine's OpenMP threads from spinning between the ops of every decode step
        return in_passing_thread(lambda: self.model.embed(ids))

    def _finish(self, request: _Request) -> None:
        vectors = request.vectors
        if request.dimensions is not None:
            # OpenAI's shortened embeddings: keep the first d values, back to unit length
            vectors = np.ascontiguousarray(vectors[:, : request.dimensions])
            if self.model.normalize:
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                vectors = vectors / np.maximum(norms, 1e-12)
        result = EmbeddingResult(
            vectors.astype(np.float32, copy=False),
            tuple(len(e.ids) for e in request.encoded),
            tuple(e.truncated for e in request.encoded),
        )
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
            request.future.set_result(result)


def _fail(request: _Request, exc: BaseException) -> None:
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        request.future.set_exception(exc)


def _all_ids(value: object) -> TypeGuard[Sequence[int]]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        return False
    return all(isinstance(t, int) and not isinstance(t, bool) for t in value)
