"""The engine loop: schedule -> run -> postprocess.

``LLMEngine`` is synchronous and single-threaded: ``step()`` advances every scheduled sequence
by one forward pass and returns what each request produced. A request with a ``constraint``
has a grammar matcher (``constraints.GrammarCompiler``) from ``add_request`` until it is
released: its token mask is filled before each sample, the sampled token is fed back, and it
finishes with "stop" when the grammar is complete. ``generate()`` drives it to the end
for offline use. ``async_engine.AsyncEngine`` runs the same loop in a background thread for the
HTTP layer. ``build.build_engine`` makes one from a model file. A failure inside a step ends the
request it belongs to, or the batch when it belongs to all of them (``faults``); either way the
engine stays usable.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import torch

from server_ref.engine.constraints import GrammarCompiler, GrammarMatcher
from server_ref.engine.faults import BATCH_FAILED, INTERNAL_ERROR, FaultHook, Stage
from server_ref.engine.runner import ModelRunner
from server_ref.engine.sampler import RowState, sample, token_logprob
from server_ref.engine.scheduler import ScheduledSeq, Scheduler
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

log = logging.getLogger("server_ref.engine")


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
        self.faults: FaultHook | None = None  # tests only: raise at a chosen stage
        self.batch_failures_in_a_row = 0  # reset by every step whose forward pass worked

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

    def abort(self, request_id: str, reason: str | None = None) -> StepOutput | None:
        """Stop a request and free its cache; its last output (``None`` if unknown).
        ``reason`` becomes the output's ``error``: why the server stopped it."""
        seq = self._seqs.get(request_id)
        if seq is None:
            return None
        seq.finish_reason = "abort"
        self._release(seq)
        return self._output(seq, [], None, finished=True, error=reason)

    def has_work(self) -> bool:
        return self.scheduler.has_work()

    def stats(self) -> EngineStats:
        b = self.scheduler.blocks
        return EngineStats(
            running=len(self.scheduler.running),
            waiting=len(self.scheduler.waiting),
            kv_blocks_used=b.num_used,
            kv_blocks_total=b.num_blocks,
            prefix_cache_queries=self.scheduler.prefix_queried_tokens,
            prefix_cache_hits=self.scheduler.prefix_hit_tokens,
        )

    # -- the loop -----------------------------------------------------------------------------

    def step(self) -> list[StepOutput]:
        """Advance every scheduled sequence by one forward pass; what each request produced.

        A failure is charged to the request it belongs to (see ``faults``): the others of
        the batch still get their token. A failure of the shared part (scheduling, the forward
        pass, KV bookkeeping) ends the whole batch with an error output per request.
        """
        batch: list[ScheduledSeq] = []
        try:
            batch = self.scheduler.schedule()
            if not batch:
                return []
            logits = self._forward(batch)
        except Exception:
            # Nothing half-done is kept: before a batch exists any sequence may be involved.
            seqs = [s.seq for s in batch] or [*self.scheduler.running, *self.scheduler.waiting]
            return self._fail_batch(seqs)
        self.batch_failures_in_a_row = 0
        return self._sample_and_postprocess([s.seq for s in batch if s.samples], logits)

    def _forward(self, batch: list[ScheduledSeq]) -> torch.Tensor:
        for s in batch:
            self._at("forward", s.seq)
        tables = [self.scheduler.blocks.table(s.seq.request_id) for s in batch]
        logits = self.runner.execute(batch, tables)
        blocks = self.scheduler.blocks
        for s in batch:
            s.seq.num_computed += s.num_new
            blocks.commit(s.seq.request_id, s.seq.num_computed, s.seq.tokens_between)
        return logits

    def _sample_and_postprocess(
        self, seqs: list[Sequence], logits: torch.Tensor
    ) -> list[StepOutput]:
        outputs: list[StepOutput] = []
        rows: list[RowState] = []
        keep: list[int] = []
        for j, seq in enumerate(seqs):
            try:
                self._at("prepare", seq)
                rows.append(self._row_state(seq))
                keep.append(j)
            except Exception:
                outputs.append(self._fail_request(seq, "prepare"))
        if len(keep) < len(seqs):
            seqs, logits = [seqs[j] for j in keep], logits[keep]
        if self._matchers:
            seqs, rows, logits, failed = self._fill_token_masks(seqs, rows, logits)
            outputs.extend(failed)
        for seq, (token, lp_row) in zip(seqs, self._sample(seqs, rows, logits), strict=True):
            if token is None:  # _sample logged why
                outputs.append(self._fail(seq, INTERNAL_ERROR.format(request_id=seq.request_id)))
                continue
            try:
                outputs.append(self._postprocess(seq, token, lp_row))
            except Exception:
                outputs.append(self._fail_request(seq, "postprocess"))
        return outputs

    def _fill_token_masks(
        self, seqs: list[Sequence], rows: list[RowState], logits: torch.Tensor
    ) -> tuple[list[Sequence], list[RowState], torch.Tensor, list[StepOutput]]:
        """The grammar masks of the constrained rows, in one parallel fill. When that raises,
        each matcher is filled on its own and a request whose matcher fails ends alone."""
        constrained = [j for j, q in enumerate(seqs) if q.request_id in self._matchers]
        if not constrained or self.compiler is None:
            return seqs, rows, logits, []
        matchers = [self._matchers[seqs[j].request_id] for j in constrained]
        try:
            for j in constrained:
                self._at("grammar", seqs[j])
            masks = self.compiler.fill_next_token_bitmask(matchers)
        except Exception:
            log.warning("filling %d grammar masks failed; one by one", len(matchers), exc_info=True)
        else:
            for k, j in enumerate(constrained):
                rows[j].token_bitmask = masks[k]
            return seqs, rows, logits, []
        failed: list[StepOutput] = []
        keep = [j for j in range(len(seqs)) if j not in constrained]
        for j, matcher in zip(constrained, matchers, strict=True):
            try:
                self._at("grammar", seqs[j])
                rows[j].token_bitmask = self.compiler.fill_next_token_bitmask([matcher])[0]
                keep.append(j)
            except Exception:
                failed.append(self._fail_request(seqs[j], "grammar"))
        keep.sort()
        return [seqs[j] for j in keep], [rows[j] for j in keep], logits[keep], failed

    def _row_state(self, seq: Sequence) -> RowState:
        return RowState(seq.params, seq.output_ids, self._generators.get(seq.request_id))

    def _sample(
        self, seqs: list[Sequence], rows: list[RowState], logits: torch.Tensor
    ) -> list[tuple[int | None, torch.Tensor | None]]:
        """One token (``None``: sampling failed for that row) and logprobs row per sequence.

        Sampling is batched; when the batch raises, every row is sampled again on its own
        from the logits as they came from the model, so the faulty row is found and the
        others get exactly the token the batch would have given them: the sampler is
        row-independent, and seeded generators are rewound to their state before the batch
        (the batch may have drawn for some rows before it raised). Unseeded rows draw from
        the shared global generator, which no request can replay anyway.
        """
        before = [r.generator.get_state() if r.generator is not None else None for r in rows]
        pristine = logits.clone()  # the sampler adjusts logits in place
        try:
            for seq in seqs:
                self._at("sample", seq)
            result = sample(logits, rows)
        except Exception:
            log.warning(
                "batched sampling failed; sampling its %d rows one by one", len(rows), exc_info=True
            )
        else:
            lps = result.logprobs
            return [(t, None if lps is None else lps[j]) for j, t in enumerate(result.token_ids)]
        out: list[tuple[int | None, torch.Tensor | None]] = []
        for j, (seq, row, state) in enumerate(zip(seqs, rows, before, strict=True)):
            if row.generator is not None and state is not None:
                row.generator.set_state(state)
            try:
                self._at("sample", seq)
                one = sample(pristine[j : j + 1].clone(), [row])
            except Exception:
                log.exception("sampling failed for request %s", seq.request_id)
                out.append((None, None))
                continue
            out.append((one.token_ids[0], None if one.logprobs is None else one.logprobs[0]))
        return out

    def _postprocess(self, seq: Sequence, token: int, lp_row: torch.Tensor | None) -> StepOutput:
        lp = None
        if seq.params.logprobs is not None and lp_row is not None:
            self._at("logprobs", seq)
            lp = [token_logprob(self.tokenizer.token_bytes, lp_row, token, seq.params.logprobs)]
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
        self._at("stop_check", seq)
        if token in seq.stop_ids():
            seq.finish_reason = "stop"
            text = seq.detok.flush()
        else:
            self._at("detokenize", seq)
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

    # -- failures -----------------------------------------------------------------------------

    def _at(self, stage: Stage, seq: Sequence) -> None:
        if self.faults is not None:
            self.faults.check(stage, seq.request_id)

    def _fail_request(self, seq: Sequence, stage: str) -> StepOutput:
        """End one request after an exception while handling it (called in its handler)."""
        log.exception("request %s failed in %s; its batch goes on", seq.request_id, stage)
        return self._fail(seq, INTERNAL_ERROR.format(request_id=seq.request_id))

    def _fail_batch(self, seqs: list[Sequence]) -> list[StepOutput]:
        self.batch_failures_in_a_row += 1
        log.exception(
            "the engine step failed (%d in a row); failing the %d requests of its batch: %s",
            self.batch_failures_in_a_row,
            len(seqs),
            ", ".join(s.request_id for s in seqs),
        )
        return [self._fail(s, BATCH_FAILED.format(request_id=s.request_id)) for s in seqs]

    def _fail(self, seq: Sequence, message: str) -> StepOutput:
        seq.finish_reason = "error"
        self._release(seq)
        return self._output(seq, [], None, finished=True, error=message)

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
        error: str | None = None,
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
            error=error,
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
