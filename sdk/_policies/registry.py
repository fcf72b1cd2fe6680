"""What a client has learnt about its servers and models, shared by its copies and threads:
the tokenizers it holds, and how each server counts tokens when it exports no tokenizer."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Literal, TypeAlias

if TYPE_CHECKING:
    from sdk.tokens.cache import RankCache
    from sdk.tokens.tokenizer import Tokenizer

__all__ = ["DIALECTS", "CountKind", "Dialect", "TokenizerRegistry"]

# how a server counts for us (sdk._policies.dialects), in the order they are tried
Dialect: TypeAlias = Literal["vllm", "llamacpp", "llama-cpp-python"]
CountKind: TypeAlias = Literal["prompt", "chat"]
DIALECTS: dict[CountKind, tuple[Dialect, ...]] = {
    "prompt": ("vllm", "llamacpp", "llama-cpp-python"),
    "chat": ("vllm", "llamacpp"),  # llama-cpp-python cannot render a chat for us
}


class TokenizerRegistry:
    """Tokenizers by (server, model); each server's counting dialects by kind of count.

    Two calls that miss at the same time may both fetch; the first to finish is kept. The
    lock is only held for dictionary access, never across I/O.
    """

    def __init__(self, cache: RankCache | None = None) -> None:
        self._lock = threading.Lock()
        self._tokenizers: dict[tuple[str, str], Tokenizer] = {}
        self._dialects: dict[tuple[str, CountKind], tuple[Dialect, ...]] = {}
        self._confirmed: dict[tuple[str, CountKind], Dialect] = {}
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
        """Keep ``tokenizer`` unless one is already there (fetched by a concurrent call)."""
        with self._lock:
            return self._tokenizers.setdefault((server, model), tokenizer)

    def register(self, server: str, model: str, tokenizer: Tokenizer) -> None:
        """Use ``tokenizer`` for ``model`` on ``server`` from now on, replacing any other."""
        with self._lock:
            self._tokenizers[(server, model)] = tokenizer

    def dialects(self, server: str, kind: CountKind) -> tuple[Dialect, ...]:
        """The dialects worth trying: the one that worked, else those not ruled out yet."""
        with self._lock:
            return self._dialects.get((server, kind), DIALECTS[kind])

    def confirmed(self, server: str, kind: CountKind) -> Dialect | None:
        """The dialect that has counted for ``server`` before, if one has."""
        with self._lock:
            return self._confirmed.get((server, kind))

    def confirm(self, server: str, kind: CountKind, dialect: Dialect) -> None:
        with self._lock:
            self._dialects[(server, kind)] = (dialect,)
            self._confirmed[(server, kind)] = dialect
            if kind == "chat" and (server, "prompt") not in self._confirmed:
                # a chat count tokenizes text too, the same way
                self._dialects[(server, "prompt")] = (dialect,)
                self._confirmed[(server, "prompt")] = dialect

    def rule_out(self, server: str, kind: CountKind, dialect: Dialect) -> bool:
        """Strike ``dialect`` off; ``True`` when that leaves the server none for ``kind``."""
        with self._lock:
            left = self._dialects.get((server, kind), DIALECTS[kind])
            if dialect not in left:
                return False  # a concurrent call got there first
            self._dialects[(server, kind)] = tuple(d for d in left if d != dialect)
            return len(left) == 1

    def clear(self) -> None:
        with self._lock:
            self._tokenizers.clear()
            self._dialects.clear()
            self._confirmed.clear()
