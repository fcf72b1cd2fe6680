"""Grammar-constrained decoding: token masks that keep a sequence inside a JSON schema.

A ``ConstraintSpec`` (plain data in ``engine.types``, built by the API layer) says what the
output must be (``json_object``, ``json_schema`` with its ``strict`` flag, a ``regex`` or a
``lark`` grammar). ``GrammarCompiler`` turns a spec into a
compiled grammar for one model's vocabulary, cached by the spec, and raises ``ConstraintError``
(a ``ValueError``, so the API answers 400) for an invalid schema or one that uses a keyword the
grammar engine cannot enforce. Each sequence gets its own ``GrammarMatcher``; per step the
engine asks for the allowed-token bitmask of all constrained sequences at once, the sampler
applies it, and the sampled token is fed back with ``accept``.

The grammar engine is llguidance (llama.cpp's, and one of vLLM's backends), chosen over
xgrammar by measurement: ``benchmarks/bench_constraints.py --compare-xgrammar`` on the default
model's vocabulary (49152 tokens; 11 schemas + json_object, 72 walks replayed through both;
llguidance 1.9.1, xgrammar 0.2.9; a 2-core AMD EPYC VM at load average 8 from other jobs):

* Unsupported keywords decided it. llguidance refuses ``uniqueItems``, ``not``, ``contains``,
  ``if``/``then``, ``dependentRequired``, ``propertyNames``, look-around in ``pattern`` and
  unknown ``format`` values when compiling, naming them ('Unimplemented keys:
  ["uniqueItems"]'). xgrammar compiles all eight, enforces only ``propertyNames``, and accepts
  output violating the other seven (``[1, 1]`` under ``uniqueItems``): "valid by construction"
  would silently not hold. Its other errors are C++ exceptions prefixed with a source path.
* Dependencies: none for llguidance (7.6 MB installed); xgrammar pulls in transformers and
  triton (about 1.1 GB installed).
* Speed, both far below a decode step (16 sequences: about 70 ms here, README). Compile, cold:
  llguidance 0.35-1 ms per schema (a few 5 ms outliers under load), xgrammar 2-47 ms and 619 ms
  for a pydantic schema with ``$defs``; cached: 0.02-0.1 ms against 0.06-0.3 ms. Mask for one
  sequence: llguidance median 7 us, p99 181 us; xgrammar median 5 us, p99 16 us. 16 sequences
  per step: llguidance 0.25 ms, xgrammar 0.03 ms.
* Correctness: every walk through llguidance's masks validated with ``jsonschema``; xgrammar
  rejected 4 of those valid replies (a number with many fraction digits under ``minimum`` /
  ``maximum``).

JSON is generated compactly with the separators of ``json.dumps`` (", " and ": ") and no other
whitespace: flexible whitespace lets small models loop on newlines (vLLM's
``disable_any_whitespace`` exists for the same reason). ``strict=True`` treats an object without
``additionalProperties`` as closed, as OpenAI's strict mode requires it to be.

Engine usage, one compiler per model::

    compiler = GrammarCompiler.from_tokenizer(tok, vocab_size=V, eos_token_ids=eos)
    compiler.compile(spec)                      # request check: ConstraintError -> 400
    m = compiler.matcher(spec)                  # at add_request (a cache hit)
    masks = compiler.fill_next_token_bitmask([m, ...])  # each step, before sampling
    ok = m.accept(token)                        # after sampling; m.error says why not
    m.finished                                  # only EOS can follow: finish the sequence
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import llguidance as llg
import torch
from torch import Tensor

from sdk.tokens.schema_rewrite import close_objects
from server_ref.engine.types import ConstraintError, ConstraintSpec

__all__ = [
    "ConstraintError",
    "ConstraintSpec",
    "GrammarCompiler",
    "GrammarMatcher",
]

# separators are regexes since llguidance 1.3; these two match only themselves
_JSON_FORMAT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class _Vocabulary(Protocol):
    """What the compiler reads from a tokenizer (``sdk.tokens.ModelTokenizer``)."""

    @property
    def n_vocab(self) -> int: ...

    @property
    def special_tokens(self) -> dict[str, int]: ...

    def token_bytes(self, token_id: int) -> bytes: ...

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]: ...


@dataclass
class _LLGuidanceVocab:
    """The duck-typed tokenizer ``llguidance.TokenizerWrapper`` wraps."""

    tokens: list[bytes]
    special_token_ids: list[int]
    eos_token_id: int
    bos_token_id: int | None
    encode: Callable[[str], list[int]]

    def __call__(self, text: str) -> list[int]:
        return self.encode(text)


class GrammarMatcher:
    """One sequence's position in its grammar."""

    def __init__(self, matcher: llg.LLMatcher) -> None:
        self._m = matcher

    def accept(self, token_id: int) -> bool:
        """Advance by one sampled token; ``False`` (and ``error`` set) if the grammar rejects
        it. An EOS token is accepted once the grammar may end."""
        return self._m.consume_token(token_id)

    @property
    def finished(self) -> bool:
        """The grammar is complete and nothing but EOS can follow (also after an error)."""
        return self._m.is_stopped()

    @property
    def error(self) -> str | None:
        """Why the matcher stopped with an error (a rejected token, a parser limit)."""
        if not self._m.is_error():
            return None
        return self._m.get_error() or "the grammar matcher failed"


class GrammarCompiler:
    """Compiles constraints for one vocabulary and keeps the last ``cache_size`` of them.

    ``token_bytes[i]`` is token ``i``'s text; ``vocab_size`` is the width of the model's logits.
    Ids from ``len(token_bytes)`` up to ``vocab_size`` (padding) are never allowed; tokens at or
    above ``vocab_size`` cannot be sampled, so they are left out. Thread-safe.

    >>> c = GrammarCompiler.from_tokenizer(tok, vocab_size=V, eos_token_ids=E)  # doctest: +SKIP
    >>> c.compile(ConstraintSpec.json_schema({"uniqueItems": True}))  # doctest: +SKIP
    Traceback (most recent call last):
    ConstraintError: unsupported JSON schema: Unimplemented keys: ["uniqueItems"]
    """

    def __init__(
        self,
        token_bytes: Sequence[bytes],
        *,
        special_ids: Sequence[int],
        eos_token_ids: Sequence[int],
        encode: Callable[[str], list[int]],
        vocab_size: int,
        cache_size: int = 256,
        threads: int | None = None,
    ) -> None:
        if not eos_token_ids or any(not 0 <= t < vocab_size for t in eos_token_ids):
            raise ValueError(f"EOS ids {list(eos_token_ids)} must be in [0, {vocab_size})")
        tokens = [bytes(b) for b in token_bytes[:vocab_size]]
        padding = range(len(tokens), vocab_size)
        tokens += [b""] * len(padding)
        specials = sorted({t for t in special_ids if t < vocab_size} | set(padding))
        vocab = _LLGuidanceVocab(tokens, specials, eos_token_ids[0], None, encode)
        self._tokenizer = llg.LLTokenizer(
            llg.TokenizerWrapper(vocab), n_vocab=vocab_size, eos_token=list(eos_token_ids)
        )
        self.vocab_size = vocab_size
        self._limits = llg.LLParserLimits(verbose_errors=False)
        self._executor = llg.LLExecutor(num_threads=threads)
        self._cache: OrderedDict[ConstraintSpec, llg.LLMatcher] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @classmethod
    def from_tokenizer(
        cls, tokenizer: _Vocabulary, *, vocab_size: int, eos_token_ids: Sequence[int], **kw: Any
    ) -> GrammarCompiler:
        """The compiler for a server tokenizer; ``vocab_size`` is the model's logits width."""
        n = min(tokenizer.n_vocab, vocab_size)
        return cls(
            [tokenizer.token_bytes(i) for i in range(n)],
            special_ids=list(tokenizer.special_tokens.values()),
            eos_token_ids=eos_token_ids,
            encode=lambda text: tokenizer.encode(text, allow_special=False),
            vocab_size=vocab_size,
            **kw,
        )

    def compile(self, spec: ConstraintSpec) -> None:
        """Compile ``spec`` into the cache; raises ``ConstraintError`` naming what is wrong."""
        self._pristine(spec)

    def matcher(self, spec: ConstraintSpec) -> GrammarMatcher:
        """A fresh matcher at the start of ``spec``'s grammar (compiled if not cached).

        Copies of one cached grammar share its lexer, so masks get cheaper as it is reused.
        """
        pristine = self._pristine(spec)
        with self._lock:
            return GrammarMatcher(pristine.deep_copy())

    def fill_next_token_bitmask(self, matchers: Sequence[GrammarMatcher]) -> Tensor:
        """The allowed tokens of every matcher, computed in parallel: int32 on the CPU,
        ``[len(matchers), ceil(vocab_size / 32)]``, bit ``t % 32`` of word ``t // 32`` set when
        token ``t`` is allowed, row ``i`` for ``matchers[i]``. After an error only EOS is."""
        bitmask = torch.full((len(matchers), (self.vocab_size + 31) // 32), -1, dtype=torch.int32)
        if matchers:
            pairs = [(m._m, i) for i, m in enumerate(matchers)]
            row_bytes = bitmask.shape[1] * 4
            self._executor.unsafe_compute_mask_ptr(
                pairs, bitmask.data_ptr(), row_bytes, len(matchers)
            )
        return bitmask

    def cache_info(self) -> tuple[int, int, int]:
        """(hits, misses, current size) of the compiled-grammar cache."""
        with self._lock:
            return self.hits, self.misses, len(self._cache)

    def _pristine(self, spec: ConstraintSpec) -> llg.LLMatcher:
        with self._lock:
            cached = self._cache.get(spec)
            if cached is not None:
                self._cache.move_to_end(spec)
                self.hits += 1
                return cached
            self.misses += 1
        # outside the lock: building can take long for a huge grammar (llguidance drops the GIL)
        matcher = llg.LLMatcher(self._tokenizer, _grammar(spec), log_level=0, limits=self._limits)
        if matcher.is_error():
            raise ConstraintError(_describe(spec, matcher.get_error()))
        with self._lock:
            self._cache[spec] = matcher
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return matcher


def _grammar(spec: ConstraintSpec) -> str:
    """The llguidance grammar (JSON text) for ``spec``."""
    if spec.kind == "regex":
        return llg.LLMatcher.grammar_from_regex(spec.source)
    if spec.kind == "lark":
        return llg.LLMatcher.grammar_from_lark(spec.source)
    schema: dict[str, Any] = {"type": "object"}
    if spec.kind == "json_schema":
        schema = json.loads(spec.source)
        if spec.strict:
            schema = close_objects(schema)
    try:
        return llg.LLMatcher.grammar_from_json_schema(schema, overrides=_JSON_FORMAT)  # type: ignore[arg-type]
    except ValueError as exc:  # only for a schema that is not an object, which specs exclude
        raise ConstraintError(f"invalid JSON schema: {exc}") from None


def _describe(spec: ConstraintSpec, error: str) -> str:
    what = {
        "json_object": "JSON object",
        "json_schema": "JSON schema",
        "regex": "regex",
        "lark": "grammar",
    }[spec.kind]
    # llguidance reports keywords it cannot enforce as "Unimplemented keys: [...]" and
    # formats as "Unknown format: ..."; everything else is an invalid input
    unsupported = error.startswith(("Unimplemented keys", "Unknown format"))
    return f"{'unsupported' if unsupported else 'invalid'} {what}: {error.strip()}"
