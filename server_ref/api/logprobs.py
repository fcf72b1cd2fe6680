"""Token logprobs in OpenAI's two shapes: chat's ``logprobs.content`` list and the legacy
completions object (``tokens``, ``token_logprobs``, ``top_logprobs`` maps, ``text_offset``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sdk.types import ChatCompletionTokenLogprob, ChoiceLogprobs, CompletionLogprobs, TopLogprob
from server_ref.engine.types import TokenLogprob

LOGPROB_FLOOR = -9999.0  # -inf is not JSON; vLLM uses the same floor


def clamp_logprob(value: float) -> float:
    return LOGPROB_FLOOR if math.isnan(value) else max(value, LOGPROB_FLOOR)


def chat_logprobs(logprobs: Sequence[TokenLogprob], top: int) -> ChoiceLogprobs:
    return ChoiceLogprobs(
        content=[
            ChatCompletionTokenLogprob(
                token=lp.token,
                logprob=clamp_logprob(lp.logprob),
                bytes=list(lp.token_bytes),
                top_logprobs=[
                    TopLogprob(token=text, logprob=clamp_logprob(value), bytes=list(raw))
                    for _, text, raw, value in lp.top[:top]
                ],
            )
            for lp in logprobs
        ]
    )


def completion_logprobs(
    logprobs: Sequence[TokenLogprob], top: int, offset: int
) -> CompletionLogprobs:
    """The legacy logprobs object; ``text_offset`` counts characters from ``offset``."""
    offsets: list[int] = []
    for lp in logprobs:
        offsets.append(offset)
        offset += len(lp.token)
    return CompletionLogprobs(
        tokens=[lp.token for lp in logprobs],
        token_logprobs=[clamp_logprob(lp.logprob) for lp in logprobs],
        top_logprobs=[_top_by_text(lp.top[:top]) for lp in logprobs],
        text_offset=offsets,
    )


def _top_by_text(top: Sequence[tuple[int, str, bytes, float]]) -> dict[str, float]:
    """The legacy ``{text: logprob}`` map. Distinct tokens can share a text (partial UTF-8
    pieces all read as U+FFFD); the list is best first, so the first one, the likelier, wins."""
    out: dict[str, float] = {}
    for _, text, _, value in top:
        out.setdefault(text, clamp_logprob(value))
    return out
