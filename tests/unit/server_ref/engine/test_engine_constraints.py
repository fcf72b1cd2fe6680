"""Grammar-constrained requests in the engine loop: masks per row, finishing when the grammar
is complete, a rejected token failing one request, matchers freed, unconstrained rows untouched.

The model is a stand-in whose logits depend only on a sequence's own tokens (so a request's
result cannot depend on what else is in the batch unless the engine mixes rows up); the
vocabulary is the fake engine's byte tokenizer, compiled by the real ``GrammarCompiler``.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import jsonschema
import pytest
import torch
from kit.fake_engine import IM_END, ByteTokenizer

from server_ref.engine.constraints import GrammarCompiler
from server_ref.engine.engine import LLMEngine
from server_ref.engine.kv_cache import BlockManager
from server_ref.engine.scheduler import ScheduledSeq, Scheduler
from server_ref.engine.types import ConstraintError, ConstraintSpec, ModelInfo, SamplingParams

VOCAB = 258
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "n": {"type": "integer", "minimum": 0, "maximum": 99},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
    },
    "required": ["name", "n", "tags"],
}
SPEC = ConstraintSpec.json_schema(SCHEMA, strict=True)


class Runner:
    """Logits seeded by the sequence's tokens: the same history, the same logits."""

    def __init__(self) -> None:
        self.model = SimpleNamespace(cfg=SimpleNamespace(vocab_size=VOCAB))
        self.device = torch.device("cpu")

    def execute(self, batch: list[ScheduledSeq], tables: list[list[int]]) -> torch.Tensor:
        rows = []
        for s in batch:
            if s.samples:
                seq = s.seq
                g = torch.Generator().manual_seed(hash((*seq.prompt_ids, *seq.output_ids)))
                rows.append(torch.randn(VOCAB, generator=g) * 3)
        return torch.stack(rows)


class Tokenizer(ByteTokenizer):
    eos_token_id = IM_END
    special_tokens = {"<|im_end|>": IM_END}  # noqa: RUF012
    n_vocab = VOCAB


def make_engine(*, compiler: bool = True) -> LLMEngine:
    tok = Tokenizer()
    scheduler = Scheduler(BlockManager(64, 4), max_num_seqs=8, max_queue=8, max_batched_tokens=64)
    info = ModelInfo(id="stand-in", context_length=200, eos_token_ids=(IM_END,))
    grammar = GrammarCompiler.from_tokenizer(tok, vocab_size=VOCAB, eos_token_ids=[IM_END])
    return LLMEngine(Runner(), tok, scheduler, info, grammar if compiler else None)  # type: ignore[arg-type]


def run(engine: LLMEngine) -> dict[str, tuple[list[int], str | None, str | None]]:
    """Step to the end: ``{request id: (tokens, finish reason, error)}``."""
    results: dict[str, tuple[list[int], str | None, str | None]] = {}
    tokens: dict[str, list[int]] = {}
    while engine.has_work():
        for out in engine.step():
            tokens.setdefault(out.request_id, []).extend(out.token_ids)
            if out.finished:
                results[out.request_id] = (tokens[out.request_id], out.finish_reason, out.error)
    return results


def text(tokens: list[int]) -> str:
    return ByteTokenizer().decode(tokens)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_constrained_request_follows_its_schema_and_stops_when_it_is_complete(
    temperature: float,
) -> None:
    engine = make_engine()
    params = SamplingParams(max_tokens=150, temperature=temperature, seed=1, constraint=SPEC)
    for i in range(4):
        engine.add_request(f"r{i}", [1, 2, i], params)
    for tokens, reason, error in run(engine).values():
        assert (reason, error) == ("stop", None)
        assert IM_END not in tokens  # finished on the closing brace, no EOS step needed
        jsonschema.validate(json.loads(text(tokens)), SCHEMA)
    assert engine._matchers == {}  # every matcher was released with its request


def test_unconstrained_requests_are_the_same_next_to_constrained_ones() -> None:
    free = SamplingParams(max_tokens=30, temperature=0.0)
    alone = make_engine()
    alone.add_request("free", [5, 6, 7], free)
    expected = run(alone)["free"]
    engine = make_engine()
    engine.add_request("json", [5, 6, 7], SamplingParams(max_tokens=150, constraint=SPEC))
    engine.add_request("free", [5, 6, 7], free)
    results = run(engine)
    assert results["free"] == expected
    assert results["json"][1] == "stop"
    assert results["json"][0] != expected[0][: len(results["json"][0])]  # the mask did act


def test_a_token_the_grammar_rejects_fails_that_request_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = make_engine()
    engine.add_request("bad", [1], SamplingParams(max_tokens=50, constraint=SPEC))
    engine.add_request("good", [1], SamplingParams(max_tokens=50, constraint=SPEC))
    monkeypatch.setattr(engine._matchers["bad"], "accept", lambda token: False)
    results = run(engine)
    tokens, reason, error = results["bad"]
    assert reason == "error" and len(tokens) == 1
    assert error is not None and "the grammar rejected token" in error
    assert results["good"][1] == "stop"
    assert engine._matchers == {}


def test_an_aborted_request_frees_its_matcher() -> None:
    engine = make_engine()
    engine.add_request("a", [1], SamplingParams(max_tokens=50, constraint=SPEC))
    engine.step()
    assert "a" in engine._matchers
    out = engine.abort("a")
    assert out is not None and out.finish_reason == "abort"
    assert engine._matchers == {}


def test_max_tokens_cuts_a_constrained_reply_with_length() -> None:
    engine = make_engine()
    engine.add_request("a", [1], SamplingParams(max_tokens=3, constraint=SPEC))
    tokens, reason, _ = run(engine)["a"]
    assert reason == "length" and len(tokens) == 3 and text(tokens).startswith('{"')


def test_bad_constraints_are_refused_before_they_run() -> None:
    engine = make_engine()
    bad = ConstraintSpec.json_schema({"type": "array", "uniqueItems": True})
    with pytest.raises(ConstraintError, match="uniqueItems"):
        engine.add_request("a", [1], SamplingParams(max_tokens=5, constraint=bad))
    with pytest.raises(ConstraintError, match="without constrained decoding"):
        make_engine(compiler=False).check_constraint(SPEC)
    assert not engine.has_work()


def test_constrained_logprobs_give_banned_alternatives_minus_infinity() -> None:
    engine = make_engine()
    digit = ConstraintSpec.regex("[0-9]")
    engine.add_request("a", [1], SamplingParams(max_tokens=5, logprobs=12, constraint=digit))
    (out,) = engine.step()
    assert out.logprobs is not None
    (lp,) = out.logprobs
    assert chr(lp.token_id) in "0123456789" and lp.logprob > -torch.inf
    allowed = [v for _, _, _, v in lp.top if v > -torch.inf]
    assert len(allowed) == 10 and len(lp.top) == 12  # the API clamps the rest to -9999.0
