"""What a client has learnt about its models' tokenizers, shared by its copies and threads."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sdk.tokens.cache import RankCache
    from sdk.tokens.tokenizer import Tokenizer

__all__ = ["TokenizerRegistry"]


class TokenizerRegistry:
    """Tokenizers by (server, model), and which servers lack ``/tokenize``.

    Two calls that miss at the same time may both fetch; the first to finish is kept. The
    lock is only held for dictionary access, never across I/O.
    """

    def __init__(self, cache: RankCache | None = None) -> None:
        self._lock = threading.Lock()
        self._tokenizers: dict[tuple[str, str], Tokenizer] = {}
        self._no_tokenize: set[str] = set()
        self._cache = cache

    @property
    def cache(self) -> RankCache:
        if self._cache is None:
            from sdk.tokens.cache import RankCache

            self._cache = RankCache()
        return self._cache

    def get(self, server: str, model: str) -> Tokenizer | None:
        with self._lock:
            return self._tokenizers.get((server, model))

    def put(self, server: str, model: str, tokenizer: Tokenizer) -> Tokenizer:
        with self._lock:
            return self._tokenizers.setdefault((server, model), tokenizer)

    def tokenize_missing(self, server: str) -> bool:
        with self._lock:
            return server in self._no_tokenize

    def mark_tokenize_missing(self, server: str) -> None:
        with self._lock:
            self._no_tokenize.add(server)

    def clear(self) -> None:
        with self._lock:
            self._tokenizers.clear()
            self._no_tokenize.clear()
