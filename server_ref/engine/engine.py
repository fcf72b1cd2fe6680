"""The engine loop: schedule -> run -> postprocess.

``LLMEngine`` is synchronous and single-threaded: ``step()`` advances every scheduled sequence
by one forward pass and returns what each request produced. A request with a ``constraint``
has a grammar matcher (``constraints.GrammarCompiler``) from ``add_request`` until it is
released: its token mask is filled before each sample, the sampled token is fed back, and it
finishes with "stop" when the grammar is complete. ``generate()`` drives it to the end
for offline use. ``async_engine.AsyncEngine`` runs the same loop in a background thread for the
HTTP layer. ``build.build_engine`` makes one from a model file.
"""

from __future__ import annotations

import time
from typing import Protocol

import torch

from server_ref.engine.constraints import GrammarCompiler, GrammarMatcher
from server_ref.engine.runner import ModelRunner
from server_ref.engine.sampler import RowState, sample
from server_ref.engine.scheduler import Scheduler
from server_ref.engine.sequence import Sequence
from server_ref.engine.types import (
    ConstraintError,
    ConstraintSpec,
    EngineStats,
    ModelInfo,
    PromptTokenizer,
    SamplingParams,
    StepOutput,
    TokenLogprob,
)


class EngineTokenizer(PromptTokenizer, Protocol):
    """The HTTP layer's tokenizer surface plus what postprocessing needs."""

    @property
    def eos_token_id(self) -> int | None: ...

    @property
    def special_tokens(self) -> dict[str, int]: ...

    def token_bytes(self, token_id: int) -> bytes: ...


class LLMEngine:
    def __init__(
        self,
        runner: ModelRunner,
        tokenizer: EngineTokenizer,
        scheduler: Scheduler,
        model_info: ModelInfo,
        compiler: GrammarCompiler | None = None,
    ) -> None:
        self.runner = runner
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self.model_info = model_info
        self.compiler = compiler  # None: constrained requests are refused
        self._seqs: dict[str, Sequence] = {}
        self._generators: dict[str, torch.Generator] = {}
        self._matchers: dict[str, GrammarMatcher] = {}
        self._eos = frozenset(model_info.eos_token_ids)

    # -- requests -----------------------------------------------------------------------------

    def check_request(self, prompt_ids: list[int], params: SamplingParams) -> None:
        """Raise ValueError for a request that can never run. Reads only immutable state, so
        ``AsyncEngine`` calls it on the caller's thread and the client gets a 400, not a
        failure inside the loop."""
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        limit = self.model_info.context_length
        if len(prompt_ids) + params.max_tokens > limit:
            raise ValueError(
                f"prompt ({len(prompt_ids)} tokens) plus max_tokens ({params.max_tokens}) "
                f"exceeds the context length ({limit})"
            )
        vocab = self.runner.model.cfg.vocab_size
        if any(not 0 <= t < vocab for t in prompt_ids):
            raise ValueError(f"prompt token ids must be in [0, {vocab})")
        # an id outside the vocabulary would make the sampler's index_add_ raise mid-step,
        # which fails the whole batch and stops the engine
        if any(not 0 <= t < vocab for t, _ in params.logit_bias):
            raise ValueError(f"logit_bias token ids must be in [0, {vocab})")
        if params.seed is not None and not -(2**63) <= params.seed < 2**64:
            raise ValueError("seed must be in [-2**63, 2**64)")  # torch.Generator's range
        if params.constraint is not None:
            self.check_constraint(params.constraint)

    def check_constraint(self, spec: ConstraintSpec) -> None:
        """Compile ``spec`` into the cache; ``ConstraintError`` (a ValueError) if it cannot be.
        Thread-safe: the HTTP layer calls it off the engine thread."""
        if self.compiler is None:
            raise ConstraintError("this engine was built without constrained decoding")
        self.compiler.compile(spec)

    def add_request(self, request_id: str, prompt_ids: list[int], params: SamplingParams) -> None:
        """Queue a request. Raises ValueError for one that can never run, QueueFullError."""
        self.check_request(prompt_ids, params)
        if request_id in self._seqs:
            raise ValueError(f"duplicate request id {request_id!r}")
        seq = Sequence(request_id, list(prompt_ids), params, self._eos)
        if params.constraint is not None:
            assert self.compiler is not None  # check_request said so
            self._matchers[request_id] = self.compiler.matcher(params.constraint)
        self.scheduler.add(seq)
        self._seqs[request_id] = seq
        if params.seed is not None:
            g = torch.Generator(device=self.runner.device)
            g.manual_seed(params.seed)
            self._generators[request_id] = g

    def abort(self, request_id: str) -> StepOutput | None:
        seq = self._seqs.get(request_id)
        if seq is None:
            return None
        seq.finish_reason = "abort"
        self._release(seq)
        return self._output(seq, [], None, finished=True)

    def has_work(self) -> bool:
        return self.scheduler.has_work()

    def stats(self) -> EngineStats:
        b = self.scheduler.blocks
        return EngineStats(
            running=len(self.scheduler.running),
            waiting=len(self.scheduler.waiting),
            kv_blocks_used=b.num_used,
            kv_blocks_total=b.num_blocks,
        )

    # -- the loop -----------------------------------------------------------------------------

    def step(self) -> list[StepOutput]:
        batch = self.scheduler.schedule()
        if not batch:
            return []
        tables = [self.scheduler.blocks.table(s.seq.request_id) for s in batch]
        logits = self.runner.execute(batch, tables)
        blocks = self.scheduler.blocks
        for s in batch:
            s.seq.num_computed += s.num_new
            blocks.commit(s.seq.request_id, s.seq.num_computed, s.seq.tokens_between)
        sampling = [s.seq for s in batch if s.samples]
        rows = [
            RowState(q.params, q.output_ids, self._generators.get(q.request_id)) for q in sampling
        ]
        self._fill_token_masks(sampling, rows)
        result = sample(logits, rows)
        outputs = []
        for j, seq in enumerate(sampling):
            lp = None
            if seq.params.logprobs is not None and result.logprobs is not None:
                lp = [self._logprob(result.logprobs[j], result.token_ids[j], seq.params.logprobs)]
            outputs.append(self._postprocess(seq, result.token_ids[j], lp))
        return outputs

    def _fill_token_masks(self, sampling: list[Sequence], rows: list[RowState]) -> None:
        """The grammar masks of the constrained rows, in one parallel fill."""
        constrained = [j for j, q in enumerate(sampling) if q.request_id in self._matchers]
        if not constrained or self.compiler is None:
            return
        matchers = [self._matchers[sampling[j].request_id] for j in constrained]
        masks = self.compiler.fill_next_token_bitmask(matchers)
        for k, j in enumerate(constrained):
            rows[j].token_bitmask = masks[k]

    def _postprocess(self, seq: Sequence, token: int, lp: list[TokenLogprob] | None) -> StepOutput:
        now = time.monotonic()
        if seq.first_token_time is None:
            seq.first_token_time = now
        seq.output_ids.append(token)
        matcher = self._matchers.get(seq.request_id)
        if matcher is not None and not matcher.accept(token):
            # the mask allowed only tokens the grammar accepts: this is a bug, not bad input,
            # and it fails this request alone
            seq.finish_reason = "error"
            self._release(seq)
            out = self._output(seq, [token], lp, finished=True)
            out.error = f"the grammar rejected token {token}: {matcher.error}"
            return out
        text = ""
        if token in seq.stop_ids():
            seq.finish_reason = "stop"
            text = seq.detok.flush()
        else:
            text = seq.detok.add(self.tokenizer.token_bytes(token))
            if seq.detok.stopped:
                seq.finish_reason = "stop"
            elif matcher is not None and matcher.finished:  # only EOS could follow
                seq.finish_reason = "stop"
                text += seq.detok.flush()
            elif (
                len(seq.output_ids) >= seq.params.max_tokens
                or seq.num_tokens >= self.model_info.context_length
            ):
                seq.finish_reason = "length"
                text += seq.detok.flush()
        finished = seq.finish_reason is not None
        if finished:
            self._release(seq)
        return self._output(seq, [token], lp, finished=finished, text=text)

    def _logprob(self, row: torch.Tensor, token: int, k: int) -> TokenLogprob:
        def piece(t: int) -> tuple[str, bytes]:
            b = self.tokenizer.token_bytes(t)
            return b.decode("utf-8", errors="replace"), b

        top: tuple[tuple[int, str, bytes, float], ...] = ()
        if k > 0:
            vals, ids = row.topk(k)
            top = tuple((i, *piece(i), v) for i, v in zip(ids.tolist(), vals.tolist(), strict=True))
        text, raw = piece(token)
        return TokenLogprob(token, text, raw, float(row[token]), top)

    def _release(self, seq: Sequence) -> None:
        self.scheduler.finish(seq)
        self._seqs.pop(seq.request_id, None)
        self._generators.pop(seq.request_id, None)
        self._matchers.pop(seq.request_id, None)

    def _output(
        self,
        seq: Sequence,
        ids: list[int],
        lp: list[TokenLogprob] | None,
        *,
        finished: bool,
        text: str = "",
    ) -> StepOutput:
        return StepOutput(
            request_id=seq.request_id,
            text=text,
            token_ids=ids,
            logprobs=lp,
            finished=finished,
            finish_reason=seq.finish_reason,
            prompt_tokens=len(seq.prompt_ids),
            completion_tokens=len(seq.output_ids),
            arrival_time=seq.arrival_time,
            first_token_time=seq.first_token_time,
        )

    def generate(
        self, prompts: list[list[int]], params: SamplingParams
    ) -> list[tuple[str, list[int], str]]:
        """Run prompts to completion offline: ``[(text, token_ids, finish_reason), ...]``.

        >>> greedy = SamplingParams(max_tokens=8, temperature=0)
        >>> engine.generate([[1, 2, 3]], greedy)  # doctest: +SKIP
        """
        texts = {f"gen-{i}": "" for i in range(len(prompts))}
        ids: dict[str, list[int]] = {k: [] for k in texts}
        reasons: dict[str, str] = {}
        for i, p in enumerate(prompts):
            self.add_request(f"gen-{i}", p, params)
        while self.has_work():
            for out in self.step():
                texts[out.request_id] += out.text
                ids[out.request_id] += out.token_ids
                if out.finished:
                    reasons[out.request_id] = out.finish_reason or "stop"
        return [(texts[k], ids[k], reasons[k]) for k in texts]
