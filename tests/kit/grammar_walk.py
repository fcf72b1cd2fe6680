"""Drive a grammar matcher through the real sampler, the way the engine will.

Each step fills the matcher's bitmask, builds made-up logits, samples greedily through
``sampler.sample`` with that bitmask, and feeds the token back. The first ``free_steps`` logits
are random (any allowed token may win); after that they favour finishing: EOS, then tokens made
only of closing characters, then short tokens (random among equals), so every walk ends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import torch

from server_ref.engine.constraints import GrammarCompiler, GrammarMatcher
from server_ref.engine.sampler import RowState, sample
from server_ref.engine.types import SamplingParams

SCHEMAS: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "json_schemas.json").read_text(encoding="utf-8")
)
GREEDY = SamplingParams(max_tokens=1, temperature=0.0)


class Walker:
    """Walks for one compiler; ``token_bytes`` and ``eos_ids`` describe its vocabulary."""

    def __init__(
        self, compiler: GrammarCompiler, token_bytes: Sequence[bytes], eos_ids: Sequence[int]
    ) -> None:
        self.compiler = compiler
        self.eos = list(eos_ids)
        vocab = compiler.vocab_size
        lengths = [len(b) if i < len(token_bytes) else 99 for i, b in enumerate(token_bytes)]
        lengths += [99] * (vocab - len(lengths))
        closing = [bool(b) and set(b) <= set(b'"]}') for b in token_bytes]
        closing += [False] * (vocab - len(closing))
        # finishing preference: EOS >> closing characters >> short tokens
        self.finish_bias = -10.0 * torch.tensor(lengths[:vocab], dtype=torch.float32)
        self.finish_bias += 50.0 * torch.tensor(closing[:vocab], dtype=torch.float32)
        self.finish_bias[self.eos] = 1000.0

    def walk(
        self, matcher: GrammarMatcher, *, seed: int, free_steps: int, max_steps: int = 800
    ) -> list[int]:
        """The tokens of one walk, up to (not including) EOS. Fails if it does not end."""
        gen = torch.Generator().manual_seed(seed)
        out: list[int] = []
        for step in range(max_steps):
            bitmask = self.compiler.fill_next_token_bitmask([matcher])
            logits = torch.randn(1, self.compiler.vocab_size, generator=gen)
            if step >= free_steps:
                logits += self.finish_bias
            token = sample(logits, [RowState(GREEDY, out, None, bitmask[0])]).token_ids[0]
            assert matcher.accept(token), matcher.error
            if token in self.eos:
                assert matcher.finished
                return out
            out.append(token)
        raise AssertionError(f"no end after {max_steps} tokens")


def validate(schema: Mapping[str, Any] | None, text: str) -> Any:
    """Parse ``text`` and check it against ``schema`` (None: any JSON object), formats too."""
    value = json.loads(text)
    if schema is None:
        assert isinstance(value, dict), text
    else:
        checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
        jsonschema.Draft202012Validator(schema, format_checker=checker).validate(value)
    return value
