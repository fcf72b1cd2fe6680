"""One request's failure is its own; a failed forward pass ends its batch, not the engine.

The engine runs the tiny random-weight model. Eight requests share every batch; a fault is
injected for one of them at each stage of a step (``kit.faults``), and the other seven must
produce exactly the tokens they produce alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from kit.faults import Faults, InjectedFault

from server_ref.engine.build import EngineConfig, build_engine
from server_ref.engine.engine import LLMEngine
from server_ref.engine.faults import BATCH_FAILED, INTERNAL_ERROR, STAGES, Stage
from server_ref.engine.types import SamplingParams

Requests = dict[str, tuple[list[int], SamplingParams]]
GREEDY = SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True, logprobs=2)
VICTIM = "req-3"
ROW_STAGES = [s for s in STAGES if s != "forward"]


@pytest.fixture(scope="module")
def engine(tiny_gguf: Path) -> Iterator[LLMEngine]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and polite on a shared machine
    yield build_engine(str(tiny_gguf), EngineConfig(device="cpu", kv_cache_mib=4))
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_faults_left(engine: LLMEngine) -> Iterator[None]:
    yield
    engine.faults = None
    assert not engine.has_work()
    assert engine.stats().kv_blocks_used == 0


@dataclass
class Result:
    tokens: list[int]
    finish_reason: str | None
    error: str | None


def run(engine: LLMEngine, requests: Requests) -> dict[str, Result]:
    """Add every request at once and step until all have finished."""
    results = {rid: Result([], None, None) for rid in requests}
    for rid, (prompt, params) in requests.items():
        engine.add_request(rid, prompt, params)
    while engine.has_work():
        for out in engine.step():
            r = results[out.request_id]
            r.tokens += out.token_ids
            if out.finished:
                r.finish_reason, r.error = out.finish_reason, out.error
    return results


def eight(params: SamplingParams = GREEDY) -> Requests:
    return {f"req-{i}": ([10 + i, 20 + 2 * i, 30 + 3 * i, 40], params) for i in range(8)}


def alone(engine: LLMEngine, requests: Requests) -> dict[str, list[int]]:
    return {rid: run(engine, {rid: req})[rid].tokens for rid, req in requests.items()}


@pytest.mark.parametrize("stage", ROW_STAGES)
def test_a_request_failing_at_any_stage_fails_alone(
    engine: LLMEngine, stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    requests = eight()
    solo = alone(engine, requests)
    faults = Faults()
    faults.add(stage, VICTIM, after=3)  # mid-generation: its first tokens went out
    engine.faults = faults
    with caplog.at_level(logging.WARNING, logger="server_ref.engine"):
        together = run(engine, requests)

    assert faults.fired and {rid for _, rid in faults.fired} == {VICTIM}
    victim = together.pop(VICTIM)
    assert victim.finish_reason == "error"
    assert victim.error == INTERNAL_ERROR.format(request_id=VICTIM)
    assert 0 < len(victim.tokens) < GREEDY.max_tokens
    for rid, result in together.items():
        assert result.finish_reason == "length", rid
        assert result.tokens == solo[rid], f"{rid} changed because {VICTIM} failed"
    logged = [r for r in caplog.records if r.exc_info and VICTIM in r.getMessage()]
    assert logged, "the failure was not logged with its traceback"
    assert isinstance(logged[0].exc_info[1], InjectedFault)  # type: ignore[index]
    assert engine.batch_failures_in_a_row == 0


def test_a_failed_forward_pass_fails_its_batch_and_the_engine_goes_on(engine: LLMEngine) -> None:
    requests = eight()
    solo = alone(engine, requests)
    faults = Faults()
    faults.add("forward", VICTIM, after=2)
    engine.faults = faults
    failed = run(engine, requests)
    assert len(faults.fired) == 1  # once: nothing of the failed batch was re-admitted
    for rid, result in failed.items():
        assert result.finish_reason == "error", rid
        assert result.error == BATCH_FAILED.format(request_id=rid)
        assert len(result.tokens) == 2  # the two steps before the failure
    assert engine.batch_failures_in_a_row == 1
    assert engine.stats().kv_blocks_used == 0

    engine.faults = None
    again = run(engine, requests)
    assert {rid: r.tokens for rid, r in again.items()} == solo
    assert engine.batch_failures_in_a_row == 0


def test_a_failing_scheduler_fails_what_it_held(
    engine: LLMEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = engine.scheduler.schedule
    calls = 0

    def fail_on_third_call() -> list[object]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("injected scheduler bug")
        return schedule()  # type: ignore[return-value]

    monkeypatch.setattr(engine.scheduler, "schedule", fail_on_third_call)
    requests = eight()
    failed = run(engine, requests)
    assert {r.finish_reason for r in failed.values()} == {"error"}
    monkeypatch.undo()
    assert all(r.finish_reason == "length" for r in run(engine, requests).values())


def test_batched_sampling_failure_resamples_rows_without_disturbing_their_seeds(
    engine: LLMEngine,
) -> None:
    # A real fault inside the batched sampler: from its second token on, a NaN penalty makes
    # its row's probabilities NaN and torch.multinomial raise -- after the rows before it have
    # drawn from their generators and had their penalties applied to the logits in place. The
    # retry row by row must rewind those generators and start from the logits as the model
    # gave them. A new faulty request joins at every step, so every step takes the retry.
    params = SamplingParams(max_tokens=8, top_k=50, presence_penalty=-1.5)
    seeded = {f"seeded-{i}": ([5 + i, 6, 7], replace(params, seed=100 + i)) for i in range(4)}
    greedy = {f"greedy-{i}": ([9, 8 + i], replace(GREEDY, max_tokens=8)) for i in range(3)}
    healthy = {**seeded, **greedy}
    solo = alone(engine, healthy)

    bad = SamplingParams(max_tokens=8, seed=7, frequency_penalty=math.nan)
    tokens: dict[str, list[int]] = {rid: [] for rid in healthy}
    reasons: dict[str, str | None] = {}
    for rid, (prompt, p) in healthy.items():
        engine.add_request(rid, prompt, p)
    step = 0
    while engine.has_work():
        if step < 8:
            engine.add_request(f"nan-{step}", [1, 2, 3 + step], bad)  # sampled last
        step += 1
        for out in engine.step():
            if out.request_id in tokens:
                tokens[out.request_id] += out.token_ids
            if out.finished:
                reasons[out.request_id] = out.finish_reason
    assert tokens == solo
    assert {reasons[f"nan-{i}"] for i in range(8)} == {"error"}
