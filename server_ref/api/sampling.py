"""From a validated request to ``SamplingParams``: defaults, the context-window check, seeds.

Kept apart from the routes because chat and completions share every rule here.
"""

from __future__ import annotations

import re
from dataclasses import replace

from server_ref.api.errors import BadRequestError, ContextLengthError
from server_ref.api.schemas import ServerSamplingFields
from server_ref.engine.types import ModelInfo, SamplingParams

# A token id in decimal, as JSON object keys carry them: no sign, no leading zeros (the
# OpenAPI document states the same pattern, bounded by the vocabulary)
TOKEN_ID_KEY = re.compile(r"0|[1-9][0-9]{0,11}")
OPENAI_DEFAULT_TEMPERATURE = 1.0  # OpenAI's default; llama.cpp's 0.8 would surprise clients


def parse_logit_bias(
    logit_bias: dict[str, float] | None, *, vocab_size: int = 0
) -> tuple[tuple[int, float], ...]:
    """``{"50256": -100}`` -> ``((50256, -100.0),)``; a key that is not a token id of the
    model (when ``vocab_size`` is known) is a 400."""
    if not logit_bias:
        return ()
    out: list[tuple[int, float]] = []
    for key, value in logit_bias.items():
        if not TOKEN_ID_KEY.fullmatch(key):
            raise BadRequestError(
                f"logit_bias: key {key!r} is not a token id (a non-negative integer written "
                "without leading zeros).",
                param="logit_bias",
            )
        token_id = int(key)
        if vocab_size and token_id >= vocab_size:
            raise BadRequestError(
                f"logit_bias: token id {token_id} is outside the vocabulary [0, {vocab_size}).",
                param="logit_bias",
            )
        out.append((token_id, float(value)))
    return tuple(out)


def base_params(
    req: ServerSamplingFields, *, logprobs: int | None, vocab_size: int = 0
) -> SamplingParams:
    """Everything but ``max_tokens`` (which depends on the prompt) and per-choice seeds."""
    stop: tuple[str, ...]
    if req.stop is None:
        stop = ()
    elif isinstance(req.stop, str):
        stop = (req.stop,)
    else:
        stop = tuple(req.stop)
    return SamplingParams(
        max_tokens=1,  # placeholder; see with_max_tokens
        temperature=OPENAI_DEFAULT_TEMPERATURE if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=max(0, req.top_k or 0),
        min_p=req.min_p or 0.0,
        seed=req.seed,
        stop=stop,
        stop_token_ids=tuple(req.stop_token_ids or ()),
        ignore_eos=bool(req.ignore_eos),
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        logit_bias=parse_logit_bias(req.logit_bias, vocab_size=vocab_size),
        logprobs=logprobs,
    )


# /v1/completions without max_tokens: OpenAI's and vLLM's default, so a bare completion
# request does not run on until the context is full
COMPLETIONS_DEFAULT_MAX_TOKENS = 16


def resolve_max_tokens(
    requested: int | None,
    prompt_tokens: int,
    model: ModelInfo,
    *,
    what: str = "messages",
    default: int | None = None,
) -> int:
    """The completion budget: the request's, else ``default`` (at most what is left of the
    context window), else what is left of the context window.

    Never truncates silently: a prompt that leaves no room, or a budget that does not fit,
    is a 400 ``context_length_exceeded`` naming both counts (OpenAI's wording).
    """
    limit = model.context_length
    if prompt_tokens == 0:
        raise BadRequestError(f"The {what} are empty after tokenization.", param=what)
    if requested is None:
        if prompt_tokens >= limit:
            raise ContextLengthError(
                f"This model's maximum context length is {limit} tokens. However, your "
                f"{what} resulted in {prompt_tokens} tokens, which leaves no room for a "
                f"completion. Please reduce the length of the {what}.",
                param=what,
            )
        room = limit - prompt_tokens
        return room if default is None else min(default, room)
    if prompt_tokens + requested > limit:
        raise ContextLengthError(
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt_tokens + requested} tokens ({prompt_tokens} in the {what}, {requested} "
            f"in the completion). Please reduce the length of the {what} or completion.",
            param="max_tokens",
        )
    return requested


def per_choice(params: SamplingParams, max_tokens: int, n: int) -> list[SamplingParams]:
    """``n`` copies; with a seed, choice ``i`` gets ``seed + i`` so choices differ but a
    repeated request reproduces all of them. Past the top of the seed range (2**64 - 1) the
    count wraps to 0, so every accepted seed works with every ``n``."""
    out = []
    for i in range(n):
        seed = None if params.seed is None else params.seed + i
        if seed is not None and seed >= 2**64:
            seed -= 2**64
        out.append(replace(params, max_tokens=max_tokens, seed=seed))
    return out
