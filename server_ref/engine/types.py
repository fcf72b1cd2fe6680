"""Plain data that crosses the boundary between the HTTP layer and the engine.

The API layer turns a validated request into ``SamplingParams`` (with a ``ConstraintSpec`` for
structured output) plus prompt token ids and reads ``StepOutput`` objects back; nothing here
touches torch.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# ``--dtype`` values (meaning: ``engine.device.pick_device``); here so the CLI need not import torch
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "mixed")
# ``--int4`` values (meaning: ``engine.device.int4_max_rows``)
INT4_CHOICES = ("auto", "always", "never")

FinishReason = Literal["stop", "length", "abort", "error"]
ConstraintKind = Literal["json_object", "json_schema", "regex", "lark"]


class ConstraintError(ValueError):
    """A constraint that cannot be compiled: an invalid schema, regex or grammar, or one that
    uses a feature the grammar engine cannot enforce. The message names the problem."""


@dataclass(frozen=True)
class ConstraintSpec:
    """What a sequence's output must match; hashable, so it is also the cache key.

    ``source`` is the schema as compact JSON with its key order kept (property order decides
    the order the output is generated in), or the regex / Lark text.

    >>> ConstraintSpec.json_schema({"type": "object"}, strict=True)
    ConstraintSpec(kind='json_schema', source='{"type":"object"}', strict=True)
    """

    kind: ConstraintKind
    source: str = ""
    strict: bool = False

    @classmethod
    def json_object(cls) -> ConstraintSpec:
        """Any JSON object (``response_format={"type": "json_object"}``)."""
        return cls("json_object")

    @classmethod
    def json_schema(cls, schema: Mapping[str, Any], *, strict: bool = False) -> ConstraintSpec:
        """A JSON schema; raises ``ConstraintError`` unless it is a JSON object."""
        if not isinstance(schema, Mapping):
            raise ConstraintError(f"a JSON schema must be an object, not {type(schema).__name__}")
        try:
            source = json.dumps(schema, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConstraintError(f"the JSON schema is not valid JSON: {exc}") from None
        return cls("json_schema", source, strict)

    @classmethod
    def regex(cls, pattern: str) -> ConstraintSpec:
        """Output matching ``pattern`` in full (Rust ``regex`` syntax: no look-around)."""
        return cls("regex", pattern)

    @classmethod
    def lark(cls, grammar: str) -> ConstraintSpec:
        """Output matching a Lark grammar, in llguidance's dialect."""
        return cls("lark", grammar)


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence is sampled. ``temperature == 0`` means greedy."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()  # never emitted, also when a stop string spans tokens
    stop_token_ids: tuple[int, ...] = ()  # added to the model's EOS ids
    ignore_eos: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: int | None = None  # None: off; k >= 0: chosen token plus top-k alternatives
    # the output must match this grammar (engine.constraints); the sequence finishes with
    # "stop" as soon as the grammar is complete
    constraint: ConstraintSpec | None = None


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    token: str  # the token's text (may be a partial UTF-8 piece, shown with replacement chars)
    token_bytes: bytes
    logprob: float
    top: tuple[tuple[int, str, bytes, float], ...] = ()  # (id, text, bytes, logprob), best first


@dataclass
class StepOutput:
    """What one engine step produced for one request.

    ``text`` is the new, safe-to-show text since the previous output: never a partial UTF-8
    character, never (part of) a stop string. ``token_ids`` / ``logprobs`` are the tokens
    sampled this step (for a stop string, the text may lag the tokens).
    """

    request_id: str
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None
    finished: bool
    finish_reason: FinishReason | None
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None
    # engine timestamps (time.monotonic()) for metrics and tracing; 0.0 / None: not stamped.
    # The request arrived, was first admitted to a batch, had its first and latest token.
    arrival_time: float = 0.0
    scheduled_time: float | None = None
    first_token_time: float | None = None
    last_token_time: float | None = None


@dataclass(frozen=True)
class EngineStats:
    running: int
    waiting: int
    kv_blocks_used: int
    kv_blocks_total: int
    prefix_cache_queries: int = 0  # prompt tokens looked up in the prefix cache, ever
    prefix_cache_hits: int = 0  # of which found there (their keys/values reused)

    @property
    def kv_usage(self) -> float:
        return self.kv_blocks_used / self.kv_blocks_total if self.kv_blocks_total else 0.0


@dataclass(frozen=True)
class ModelInfo:
    """What the API layer needs to know about the loaded model."""

    id: str
    context_length: int  # max_model_len the engine accepts: prompt + max_tokens must fit
    eos_token_ids: tuple[int, ...]
    created: int = 0
    owned_by: str = "llm-sdk"
    extra: dict[str, object] = field(default_factory=dict)
    vocab_size: int = 0  # 0: unknown; else the API rejects token ids >= vocab_size with a 400


class QueueFullError(Exception):
    """The waiting queue is at its bound; the API answers 429 with Retry-After."""

    def __init__(self, retry_after: float = 1.0) -> None:
        super().__init__("the server is overloaded: waiting queue is full")
        self.retry_after = retry_after


class EngineDeadError(Exception):
    """The engine loop failed; every pending request is failed and /health is 503."""


class PromptTokenizer(Protocol):
    """What the HTTP layer needs of a tokenizer: text and chat messages to prompt token ids,
    and ids back to text. ``sdk.tokens.ModelTokenizer`` implements it."""

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    @property
    def chat_template(self) -> str | None: ...

    def render_chat(
        self,
        messages: Sequence[object],
        *,
        tools: Sequence[object] | None = None,
        tool_choice: object = None,
        parallel_tool_calls: bool | None = None,
        add_generation_prompt: bool = True,
    ) -> str:
        """The prompt text of a chat request: ``sdk.tokens.render_chat`` with the model's
        template, exactly what a client's ``count_chat`` renders."""
        ...


class EngineClient(Protocol):
    """What the HTTP layer sees of the engine. The real one is ``engine.AsyncEngine``.

    ``add_request`` raises ``QueueFullError`` synchronously when the waiting queue is full and
    ``ValueError`` for a prompt the engine can never run. The returned iterator yields outputs
    until one has ``finished=True``; closing it early (``aclose()``, task cancellation) aborts
    the request and frees its KV cache, as does ``abort``.
    """

    @property
    def model_info(self) -> ModelInfo: ...

    @property
    def tokenizer(self) -> PromptTokenizer: ...

    def is_ready(self) -> bool: ...

    def stats(self) -> EngineStats: ...

    def add_request(
        self, request_id: str, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[StepOutput]: ...

    def abort(self, request_id: str) -> None: ...

    def check_constraint(self, spec: ConstraintSpec) -> None:
        """Compile ``spec`` (cached); ``ConstraintError`` naming what is wrong with it."""
        ...
