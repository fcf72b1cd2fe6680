"""A scripted ``EngineClient`` for HTTP-layer tests: no model, no torch, deterministic.

Tokenizer: one token per UTF-8 byte (ids 0..255) plus ChatML's two special tokens.
Generation: a fixed reply (``reply``, suffixed with the seed when one is given) emitted
``step_tokens`` tokens per step, honouring ``max_tokens`` and stop strings. Knobs make it
fail mid-stream, refuse with ``QueueFullError``, report not ready, or hang after some steps.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdk.tokens import render_chat
from server_ref.engine.faults import INTERNAL_ERROR
from server_ref.engine.types import (
    ConstraintSpec,
    EngineDeadError,
    EngineStats,
    ModelInfo,
    QueueFullError,
    SamplingParams,
    StepOutput,
    TokenLogprob,
)

IM_START, IM_END = 256, 257
SPECIALS = {"<|im_start|>": IM_START, "<|im_end|>": IM_END}
_SPECIAL_RE = re.compile("|".join(re.escape(s) for s in SPECIALS))
ROLES = ("system", "user", "assistant", "tool", "developer")
CHATML = (
    "{% for m in messages %}{% if m['role'] not in "
    + repr(list(ROLES))
    + " %}{{ raise_exception('unknown role ' ~ m['role']) }}{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ByteTokenizer:
    """One token per byte; ``<|im_start|>`` / ``<|im_end|>`` are 256 / 257."""

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        if not allow_special:
            return list(text.encode())
        ids: list[int] = []
        pos = 0
        for m in _SPECIAL_RE.finditer(text):
            ids.extend(text[pos : m.start()].encode())
            ids.append(SPECIALS[m.group()])
            pos = m.end()
        ids.extend(text[pos:].encode())
        return ids

    def token_bytes(self, token_id: int) -> bytes:
        if 0 <= token_id < 256:
            return bytes([token_id])
        for text, special in SPECIALS.items():
            if special == token_id:
                return text.encode()
        raise ValueError(f"unknown token id {token_id}")

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self.token_bytes(t) for t in ids).decode("utf-8", errors="replace")

    chat_template: str | None = CHATML

    def render_chat(
        self,
        messages: Sequence[object],
        *,
        tools: Sequence[object] | None = None,
        tool_choice: object = None,
        parallel_tool_calls: bool | None = None,
        add_generation_prompt: bool = True,
    ) -> str:
        assert self.chat_template is not None
        return render_chat(
            self.chat_template,
            messages,
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            add_generation_prompt=add_generation_prompt,
        )


@dataclass
class FakeEngine:
    reply: str = "Hello there, world!"
    step_tokens: int = 3
    context_length: int = 256
    ready: bool = True
    queue_full: bool = False
    error_after_steps: int | None = None  # yield an output with ``error`` set
    raise_after_steps: int | None = None  # raise EngineDeadError from the iterator
    hang_after_steps: int | None = None  # wait forever (until cancelled/closed)
    finish_reason_override: str | None = None  # e.g. "abort": the engine drops requests

    tokenizer: ByteTokenizer = field(default_factory=ByteTokenizer)
    requests: list[tuple[str, list[int], SamplingParams]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    closed_unfinished: list[str] = field(default_factory=list)
    active: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.model_info = ModelInfo(
            id="fake-model",
            context_length=self.context_length,
            eos_token_ids=(IM_END,),
            created=1_700_000_000,
            vocab_size=258,
        )

    def is_ready(self) -> bool:
        return self.ready

    def stats(self) -> EngineStats:
        return EngineStats(
            running=len(self.active), waiting=0, kv_blocks_used=3, kv_blocks_total=12
        )

    def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    def check_constraint(self, spec: ConstraintSpec) -> None:
        """The real compiler's check, over this tokenizer's 258 tokens."""
        _byte_compiler(self.tokenizer).compile(spec)

    def reply_for(self, params: SamplingParams) -> str:
        return self.reply if params.seed is None else f"{self.reply} (seed {params.seed})"

    def add_request(
        self, request_id: str, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[StepOutput]:
        if self.queue_full:
            raise QueueFullError(retry_after=2.5)
        if any(rid == request_id for rid, _, _ in self.requests):
            raise ValueError(f"duplicate request id {request_id!r}")
        if len(prompt_ids) + params.max_tokens > self.context_length:
            raise ValueError("prompt plus max_tokens exceeds the context length")
        self.requests.append((request_id, list(prompt_ids), params))
        return self._generate(request_id, prompt_ids, params)

    def _logprobs(self, ids: list[int], k: int) -> list[TokenLogprob]:
        out = []
        for t in ids:
            raw = self.tokenizer.token_bytes(t)
            alts = [(t, raw.decode(errors="replace"), raw, -0.25)]
            alts += [(a, chr(a), bytes([a]), -2.0 - a / 100) for a in range(65, 65 + k)]
            out.append(TokenLogprob(t, raw.decode(errors="replace"), raw, -0.25, tuple(alts[:k])))
        return out

    async def _generate(
        self, request_id: str, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[StepOutput]:
        text = self.reply_for(params)
        reason = "stop"
        cut = min((text.find(s) for s in params.stop if s in text), default=-1)
        if cut >= 0:
            text = text[:cut]
        ids = list(text.encode())
        if len(ids) > params.max_tokens:
            ids, reason = ids[: params.max_tokens], "length"
        sent_bytes = 0  # bytes of ``ids`` already shown as text
        self.active.add(request_id)
        finished = False
        try:
            for step, start in enumerate(range(0, max(len(ids), 1), self.step_tokens)):
                if step == self.hang_after_steps:
                    await asyncio.Event().wait()
                if step == self.raise_after_steps:
                    raise EngineDeadError("the fake engine died")
                if step == self.error_after_steps:
                    finished = True
                    yield self._output(
                        request_id,
                        prompt_ids,
                        "",
                        [],
                        None,
                        True,
                        "error",
                        start,
                        error=INTERNAL_ERROR.format(request_id=request_id),
                    )
                    return
                chunk = ids[start : start + self.step_tokens]
                done = start + self.step_tokens >= len(ids)
                # Show only whole characters, like the real incremental detokenizer.
                upto = start + len(chunk)
                raw = bytes(ids[sent_bytes:upto])
                try:
                    delta = raw.decode()
                except UnicodeDecodeError as exc:
                    delta = raw[: exc.start].decode()
                sent_bytes += len(delta.encode())
                lps = None if params.logprobs is None else self._logprobs(chunk, params.logprobs)
                final = self.finish_reason_override or reason
                finished = done
                yield self._output(
                    request_id, prompt_ids, delta, chunk, lps, done, final if done else None, upto
                )
                await asyncio.sleep(0)
        finally:
            self.active.discard(request_id)
            if not finished:
                self.closed_unfinished.append(request_id)

    @staticmethod
    def _output(
        request_id: str,
        prompt_ids: list[int],
        text: str,
        chunk: list[int],
        lps: list[TokenLogprob] | None,
        finished: bool,
        reason: Any,
        completion_tokens: int,
        error: str | None = None,
    ) -> StepOutput:
        return StepOutput(
            request_id=request_id,
            text=text,
            token_ids=chunk,
            logprobs=lps,
            finished=finished,
            finish_reason=reason,
            prompt_tokens=len(prompt_ids),
            completion_tokens=completion_tokens,
            error=error,
        )


def sse_events(text: str) -> list[Any]:
    """``data:`` payloads of an SSE body: parsed JSON objects, or the raw string ``[DONE]``."""
    events: list[Any] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}]}


_COMPILERS: dict[int, Any] = {}


def _byte_compiler(tokenizer: ByteTokenizer) -> Any:
    """A ``GrammarCompiler`` for the byte vocabulary (torch is imported only when needed)."""
    from server_ref.engine.constraints import GrammarCompiler

    if not _COMPILERS:
        _COMPILERS[0] = GrammarCompiler(
            [tokenizer.token_bytes(i) for i in range(258)],
            special_ids=[IM_START, IM_END],
            eos_token_ids=[IM_END],
            encode=lambda text: tokenizer.encode(text, allow_special=False),
            vocab_size=258,
        )
    return _COMPILERS[0]
