"""``chunk_text``: split a long text into pieces of at most ``max_tokens`` tokens.

Pieces are cut on token boundaries, so each one is exactly the tokens it came from; a cut
that would fall inside a UTF-8 character (a byte-level token can hold part of one) moves to
the nearest earlier token boundary that is also a character boundary, so every piece is
valid text and joining the pieces (without their overlaps) gives the text back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["chunk_text"]


class _Codec(Protocol):
    def encode(self, text: str, *, allow_special: bool = ...) -> list[int]: ...

    def decode_bytes(self, ids: Iterable[int]) -> bytes: ...


def chunk_text(text: str, max_tokens: int, overlap: int = 0, *, tokenizer: _Codec) -> list[str]:
    """Split ``text`` into chunks of at most ``max_tokens`` tokens, consecutive chunks sharing
    up to ``overlap`` tokens (fewer where a character boundary forces it).

    A single character that needs more than ``max_tokens`` tokens becomes its own chunk.
    Special-token text ("<|im_end|>") in ``text`` is treated as plain text.

    >>> tok = client.tokenizer("smollm2-135m-instruct")  # doctest: +SKIP
    >>> chunks = chunk_text(document, 512, overlap=64, tokenizer=tok)  # doctest: +SKIP
    >>> max(tok.count(c, allow_special=False) for c in chunks) <= 512  # doctest: +SKIP
    True
    """
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < max_tokens:
        raise ValueError(f"overlap must be an int in [0, max_tokens), got {overlap!r}")
    ids = tokenizer.encode(text, allow_special=False)
    if not ids:
        return []
    pieces = [tokenizer.decode_bytes([token]) for token in ids]
    # boundary[i]: can a chunk start (or end) before token i without splitting a character?
    boundary = [True] * (len(ids) + 1)
    for i, piece in enumerate(pieces):
        boundary[i] = not piece or not _is_continuation(piece[0])
    chunks: list[str] = []
    start = 0
    while start < len(ids):
        end = min(start + max_tokens, len(ids))
        while end > start + 1 and not boundary[end]:
            end -= 1
        if not boundary[end]:  # a single character longer than max_tokens tokens
            end = start + 1
            while end < len(ids) and not boundary[end]:
                end += 1
        chunks.append(b"".join(pieces[start:end]).decode("utf-8", errors="replace"))
        if end >= len(ids):
            break
        start = max(end - overlap, start + 1)
        while not boundary[start]:  # boundary[end] holds, so this stops by `end`
            start += 1
    return chunks


def _is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80
