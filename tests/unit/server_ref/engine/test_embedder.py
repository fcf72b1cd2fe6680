"""The embedding service on a tiny model: batching across callers, limits as typed errors."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from kit.omp_threads import needs_teams, os_threads, settles_to
from kit.tinybert import write_tiny_bert

from server_ref.engine.build_embedder import build_embedder, pick_embedding_device
from server_ref.engine.embedder import Embedder
from server_ref.engine.embedding_types import (
    DimensionsError,
    EmbedderClosedError,
    EmbedderLimits,
    EmbedderOverloadedError,
    EmbeddingInputError,
    EmptyInputError,
    InputTooLongError,
    InputTypeError,
    TokenIdError,
    TooManyInputsError,
    split_inputs,
)

LONG = "the quick brown fox jumps over the lazy dog " * 3  # 27 words: over the 16-token limit
TEXTS = ["hello world", "the cat sat on the mat", "a", LONG, "code def return", "日本語"]


class Gate:
    """Wraps the model's ``embed``: counts passes and can hold the worker inside one."""

    def __init__(self, embedder: Embedder) -> None:
        self.inner = embedder.model.embed
        self.passes: list[int] = []  # inputs per pass
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()
        embedder.model.embed = self  # type: ignore[method-assign]

    def __call__(self, batch: Sequence[Sequence[int]]) -> torch.Tensor:
        self.entered.set()
        assert self.open.wait(10)
        self.passes.append(len(batch))
        return self.inner(batch)

    def hold(self) -> None:
        self.open.clear()
        self.entered.clear()


def _make(folder: Path, **limits: int) -> Embedder:
    return build_embedder(folder, model_id="tiny", device="cpu", limits=EmbedderLimits(**limits))


@pytest.fixture
def embedder(tiny_bert: Path) -> Iterator[Embedder]:
    e = _make(tiny_bert, max_inputs=8, max_queued_inputs=16, max_batch_tokens=64)
    e.start()
    yield e
    e.shutdown()


def _alone(embedder: Embedder, text: str) -> np.ndarray:
    ids = embedder.tokenizer.encode_batch([text])[0].ids
    return embedder.model.embed([ids]).numpy()[0]


def test_one_request_gives_vectors_counts_and_truncation_in_order(embedder: Embedder) -> None:
    result = embedder.submit(TEXTS).result(10)

    assert result.vectors.shape == (len(TEXTS), embedder.info.dimensions)
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(result.vectors[i], _alone(embedder, text), atol=1e-6)
    assert result.token_counts == tuple(len(e.ids) for e in embedder.tokenizer.encode_batch(TEXTS))
    assert result.token_counts[TEXTS.index(LONG)] == 16  # what was embedded, [CLS]/[SEP] in
    assert result.truncated == tuple(text == LONG for text in TEXTS)
    assert result.prompt_tokens == sum(result.token_counts)


def test_concurrent_callers_get_their_own_results_batched_together(embedder: Embedder) -> None:
    gate = Gate(embedder)
    gate.hold()
    first = embedder.submit(["hello"])
    assert gate.entered.wait(10)  # the worker is inside a pass: the rest waits in the queue
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = list(pool.map(lambda i: embedder.submit(TEXTS[i : i + 2]), range(5)))
    gate.open.set()
    results = [f.result(10) for f in futures]
    first.result(10)
    passes = list(gate.passes)

    for i, result in enumerate(results):
        expected = np.stack([_alone(embedder, t) for t in TEXTS[i : i + 2]])
        np.testing.assert_allclose(result.vectors, expected, atol=1e-6)
    assert passes[0] == 1
    assert sum(passes[1:]) == 10
    assert len(passes) - 1 < len(futures)  # several callers shared a pass


async def test_async_callers_are_batched_too(embedder: Embedder) -> None:
    texts = [f"the {w} sat" for w in ("cat", "dog", "fox", "a", "mat")]
    results = await asyncio.gather(*(embedder.embed([t]) for t in texts))

    for text, result in zip(texts, results, strict=True):
        np.testing.assert_allclose(result.vectors[0], _alone(embedder, text), atol=1e-6)


def test_a_bare_string_is_one_input_not_its_characters(embedder: Embedder) -> None:
    assert embedder.submit("hello world").result(10).vectors.shape[0] == 1


def test_token_ids_are_embedded_as_given(embedder: Embedder) -> None:
    ids = embedder.tokenizer.encode("hello world")  # [CLS] ... [SEP], as /tokenize gives

    by_ids = embedder.submit([ids]).result(10)
    np.testing.assert_allclose(by_ids.vectors[0], _alone(embedder, "hello world"), atol=1e-6)
    assert by_ids.token_counts == (len(ids),)
    long = embedder.submit([[5] * 40]).result(10)
    assert long.token_counts == (16,) and long.truncated == (True,)


@pytest.mark.parametrize(
    ("inputs", "error", "message"),
    [
        ([], EmptyInputError, "must not be an empty list"),
        (["ok", ""], EmptyInputError, "input[1] is an empty string"),
        ([[]], EmptyInputError, "input[0] is an empty list of token ids"),
        (["x"] * 9, TooManyInputsError, "at most 8 per request"),
        ([[2, 10_000]], TokenIdError, "token id 10000"),
        ([[2, -1]], TokenIdError, "token id -1"),
        (["a", [2, 3]], InputTypeError, "not a mix"),
        ([[2, True]], InputTypeError, "lists of token ids"),
        ([None], InputTypeError, "strings or lists"),
    ],
)
def test_bad_requests_are_typed_errors_at_submit(
    embedder: Embedder, inputs: list[object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        embedder.submit(inputs)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert isinstance(info.value, EmbeddingInputError) and info.value.param == "input"
    assert embedder.submit(["still healthy"]).result(10).vectors.shape[0] == 1


def test_over_long_input_without_truncation_fails_that_request_only(embedder: Embedder) -> None:
    bad = embedder.submit(["fine", LONG], truncate=False)
    good = embedder.submit([LONG])

    with pytest.raises(InputTooLongError, match=r"input\[1\] has 29 tokens, more than the 16"):
        bad.result(10)
    assert good.result(10).truncated == (True,)
    assert bad.exception() is not None and bad.exception().code == "context_length_exceeded"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("dims", "message"),
    [(0, "between 1 and 32"), (33, "between 1 and 32"), (16, "not trained"), (True, "integer")],
)
def test_dimensions_the_model_cannot_give_are_refused(
    embedder: Embedder, dims: int, message: str
) -> None:
    with pytest.raises(DimensionsError, match=message) as info:
        embedder.submit(["x"], dimensions=dims)
    assert info.value.param == "dimensions"
    assert embedder.submit(["x"], dimensions=32).result(10).vectors.shape == (1, 32)


def test_matryoshka_dimensions_are_cut_and_renormalised(tmp_path: Path) -> None:
    folder = write_tiny_bert(tmp_path / "m", config_overrides={"matryoshka_dimensions": [8, 16]})
    embedder = _make(folder)
    embedder.start()
    try:
        full = embedder.submit(TEXTS).result(10).vectors
        short = embedder.submit(TEXTS, dimensions=8).result(10).vectors
        with pytest.raises(DimensionsError, match="supports dimensions 8, 16, 32; got 12"):
            embedder.submit(["x"], dimensions=12)
    finally:
        embedder.shutdown()

    expected = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(short, expected, atol=1e-6)


def test_a_full_queue_is_overloaded_not_unbounded(embedder: Embedder) -> None:
    gate = Gate(embedder)
    gate.hold()
    waiting = [embedder.submit(["a"] * 8)]
    assert gate.entered.wait(10)
    waiting.append(embedder.submit(["b"] * 8))

    with pytest.raises(EmbedderOverloadedError, match="queue is full"):
        embedder.submit(["c"])
    gate.open.set()
    assert all(f.result(10).vectors.shape[0] == 8 for f in waiting)
    assert embedder.submit(["c"]).result(10).vectors.shape[0] == 1  # room again


def test_a_cancelled_request_is_skipped(embedder: Embedder) -> None:
    gate = Gate(embedder)
    gate.hold()
    first = embedder.submit(["hello"])
    assert gate.entered.wait(10)
    doomed = embedder.submit(["x"] * 8)
    assert doomed.cancel()
    gate.open.set()

    first.result(10)
    assert embedder.submit(["after"]).result(10).vectors.shape[0] == 1
    assert sum(gate.passes) == 2  # "hello" and "after"; the cancelled 8 never ran


def test_a_failing_pass_fails_its_requests_and_the_worker_goes_on(embedder: Embedder) -> None:
    inner = embedder.model.embed

    def broken(batch: Sequence[Sequence[int]]) -> torch.Tensor:
        embedder.model.embed = inner  # type: ignore[method-assign]
        raise RuntimeError("device lost")

    embedder.model.embed = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="device lost"):
        embedder.submit(["x"]).result(10)
    assert embedder.submit(["y"]).result(10).vectors.shape[0] == 1


@needs_teams
def test_a_pass_leaves_no_openmp_team_on_the_idle_worker(embedder: Embedder) -> None:
    """An idle OpenMP team would keep the chat engine's from spinning (engine.threads)."""
    before = os_threads()  # the worker thread is running
    assert embedder.submit(TEXTS).result(10).vectors.shape[0] == len(TEXTS)
    assert settles_to(before)


def test_not_started_and_shut_down_are_closed_errors(tiny_bert: Path) -> None:
    embedder = _make(tiny_bert)
    with pytest.raises(EmbedderClosedError):
        embedder.submit(["x"])
    embedder.start()
    gate = Gate(embedder)
    gate.hold()
    running = embedder.submit(["x"])
    assert gate.entered.wait(10)
    queued = embedder.submit(["y"])
    threading.Timer(0.2, gate.open.set).start()
    embedder.shutdown()

    assert running.result(10).vectors.shape[0] == 1  # the pass in flight finishes
    with pytest.raises(EmbedderClosedError):
        queued.result(10)
    with pytest.raises(EmbedderClosedError):
        embedder.submit(["z"])
    assert not embedder.is_ready()


def test_base64_decodes_to_the_same_floats(embedder: Embedder) -> None:
    result = embedder.submit(["hello", "world"]).result(10)

    for floats, b64 in zip(result.as_floats(), result.as_base64(), strict=True):
        decoded = np.frombuffer(base64.b64decode(b64), dtype="<f4")
        assert decoded.tolist() == floats  # float32 values, exactly


@pytest.mark.parametrize(
    ("value", "expected"),
    [("hi", ["hi"]), (["a", "b"], ["a", "b"]), ([1, 2], [[1, 2]]), ([[1], [2, 3]], [[1], [2, 3]])],
)
def test_split_inputs_accepts_openais_four_forms(value: object, expected: list[object]) -> None:
    assert split_inputs(value) == expected


@pytest.mark.parametrize("value", [None, 3, {"a": 1}, ["a", 1], [[1], "a"], [True], [[1.5]]])
def test_split_inputs_refuses_other_shapes(value: object) -> None:
    with pytest.raises(InputTypeError):
        split_inputs(value)


def test_limits_and_devices_are_checked() -> None:
    with pytest.raises(ValueError, match="positive"):
        EmbedderLimits(max_inputs=0)
    with pytest.raises(ValueError, match="at least one request"):
        EmbedderLimits(max_inputs=10, max_queued_inputs=5)
    assert pick_embedding_device("cpu") == (torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="unknown device"):
        pick_embedding_device("tpu")
    with pytest.raises(ValueError, match="unknown dtype"):
        pick_embedding_device("cpu", "float64")
