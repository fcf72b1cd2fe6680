"""Plain data between the HTTP layer and the embedder: limits, results, typed errors.

Nothing here touches torch. The errors carry what an OpenAI-style error body needs
(``message``, ``param``, ``code``); the route turns each into a response without looking
inside::

    EmbedderError
     ├── EmbeddingInputError     400 invalid_request_error (param "input" or "dimensions")
     │   ├── EmptyInputError         an empty list, an empty string, an empty token list
     │   ├── TooManyInputsError      more inputs than ``EmbedderLimits.max_inputs``
     │   ├── InputTypeError          not a string, a list of strings, ids or lists of ids
     │   ├── TokenIdError            an id outside the vocabulary
     │   ├── InputTooLongError       over the model's limit with truncation off
     │   │                           (code context_length_exceeded)
     │   └── DimensionsError         ``dimensions`` the model cannot give
     ├── EmbedderOverloadedError 429 rate_limit_exceeded, with ``retry_after``
     └── EmbedderClosedError     503 (shut down or not started)

    >>> split_inputs("hello")
    ['hello']
    >>> split_inputs([[101, 102]])
    [[101, 102]]
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "DimensionsError",
    "EmbedderClosedError",
    "EmbedderError",
    "EmbedderLimits",
    "EmbedderOverloadedError",
    "EmbeddingInputError",
    "EmbeddingModelInfo",
    "EmbeddingResult",
    "EmptyInputError",
    "InputTooLongError",
    "InputTypeError",
    "TokenIdError",
    "TooManyInputsError",
    "split_inputs",
]


class EmbedderError(Exception):
    """Base of the embedder's errors; ``param`` and ``code`` as in OpenAI's error body."""

    default_code: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = self.default_code


class EmbeddingInputError(EmbedderError, ValueError):
    """The request can never be served as it is: a 400."""

    default_code = "invalid_value"

    def __init__(self, message: str, *, param: str = "input") -> None:
        super().__init__(message, param=param)


class EmptyInputError(EmbeddingInputError):
    pass


class TooManyInputsError(EmbeddingInputError):
    pass


class InputTypeError(EmbeddingInputError):
    default_code = "invalid_type"


class TokenIdError(EmbeddingInputError):
    pass


class InputTooLongError(EmbeddingInputError):
    default_code = "context_length_exceeded"


class DimensionsError(EmbeddingInputError):
    def __init__(self, message: str) -> None:
        super().__init__(message, param="dimensions")


class EmbedderOverloadedError(EmbedderError):
    """Too many inputs are waiting: a 429 with ``Retry-After``."""

    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EmbedderClosedError(EmbedderError):
    """The embedder is not running (not started yet, or shut down): a 503."""


@dataclass(frozen=True)
class EmbedderLimits:
    """Bounds that keep one request, one forward pass and the queue finite.

    ``max_inputs``: per request (OpenAI's limit is 2048). ``max_batch_tokens``: padded tokens
    (inputs x longest) in one forward pass; it bounds how long one pass holds the cores (or
    the GPU) that chat decoding shares, and its activation memory. ``max_batch_inputs``:
    inputs in one pass. ``max_queued_inputs``: inputs waiting over all requests; beyond it a
    request is refused as overloaded instead of growing memory without bound.
    """

    max_inputs: int = 2048
    max_batch_tokens: int = 8192
    max_batch_inputs: int = 64
    max_queued_inputs: int = 8192

    def __post_init__(self) -> None:
        for name in ("max_inputs", "max_batch_tokens", "max_batch_inputs", "max_queued_inputs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_queued_inputs < self.max_inputs:
            raise ValueError("max_queued_inputs must hold at least one request of max_inputs")


@dataclass(frozen=True)
class EmbeddingModelInfo:
    """What the HTTP layer needs to know about the embedding model (for /v1/models too)."""

    id: str
    dimensions: int  # width of an embedding
    max_tokens: int  # per input, [CLS] and [SEP] included; longer ones are truncated or refused
    vocab_size: int  # token ids must be below it
    matryoshka_dims: tuple[int, ...] = ()  # widths ``dimensions`` may ask for besides the full one
    extra: dict[str, object] | None = None  # device, dtype: informational
    created: int = 0  # unix time it was loaded (the model card's ``created``)


@dataclass(frozen=True)
class EmbeddingResult:
    """The embeddings of one request, in input order.

    ``vectors`` [n, d] float32 (unit length when the model normalises). ``token_counts``: the
    tokens each input was embedded with, [CLS] and [SEP] included (after truncation; what
    the model computed on, as vLLM and text-embeddings-inference count). ``truncated``:
    which inputs were cut to the model's limit.
    """

    vectors: npt.NDArray[np.float32]
    token_counts: tuple[int, ...]
    truncated: tuple[bool, ...]

    @property
    def prompt_tokens(self) -> int:
        """``usage.prompt_tokens`` (and ``total_tokens``) of the response."""
        return sum(self.token_counts)

    def as_floats(self) -> list[list[float]]:
        """``encoding_format="float"``: one list of floats per input."""
        rows: list[list[float]] = self.vectors.tolist()
        return rows

    def as_base64(self) -> list[str]:
        """``encoding_format="base64"``: each vector's little-endian float32 bytes, base64
        (what openai-python decodes with ``np.frombuffer(..., dtype="float32")``)."""
        return [str(row) for row in self.encoded("base64")]

    def encoded(self, encoding_format: str | None) -> Iterator[list[float] | str]:
        """The vectors one at a time in ``encoding_format`` (``"base64"``, else floats): a
        response can be written in pieces, never holding the GIL for all of it at once."""
        data = self.vectors.astype("<f4", copy=False)
        for row in data:
            if encoding_format == "base64":
                yield base64.b64encode(row.tobytes()).decode("ascii")
            else:
                floats: list[float] = row.tolist()
                yield floats


def split_inputs(value: Any) -> list[str] | list[list[int]]:
    """OpenAI's four ``input`` forms (str, [str], [int], [[int]]) as a list of inputs."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list | tuple):
        raise InputTypeError(_TYPES)
    items = list(value)
    if not items:
        raise EmptyInputError("input must not be an empty list")
    if all(isinstance(x, str) for x in items):
        return items
    if all(_is_id(x) for x in items):
        return [items]
    if all(isinstance(x, list | tuple) and all(_is_id(i) for i in x) for x in items):
        return [list(x) for x in items]
    raise InputTypeError(_TYPES)


_TYPES = "input must be a string, a list of strings, a list of token ids or a list of such lists"


def _is_id(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
