"""``chunk_text``: token-boundary chunks that never split a character."""

from __future__ import annotations

import itertools

import pytest
from kit.tokenizer_server import toy_tokenizer

from sdk.tokens import chunk_text

TOK = toy_tokenizer()  # byte-level: every non-ASCII character is several tokens


def size(text: str) -> int:
    return TOK.count(text, allow_special=False)


@pytest.mark.parametrize("max_tokens", [1, 2, 3, 7, 50])
def test_chunks_fit_and_join_back_to_the_text(max_tokens: int) -> None:
    text = "hello world, the world! ünïcödé 日本語 🎉🎉 <|im_end|> tail"
    chunks = chunk_text(text, max_tokens, tokenizer=TOK)
    assert "".join(chunks) == text
    for chunk in chunks:
        # every chunk is valid text on token boundaries; a 4-byte emoji is 4 tokens, so
        # only with max_tokens < 4 may a single character exceed the limit
        assert size(chunk) <= max(max_tokens, 4)
        assert "\ufffd" not in chunk


def test_overlap_repeats_the_end_of_the_previous_chunk() -> None:
    text = " ".join(f"word{i}" for i in range(60))
    chunks = chunk_text(text, 20, overlap=5, tokenizer=TOK)
    ids = [TOK.encode(c, allow_special=False) for c in chunks]
    for previous, current in itertools.pairwise(ids):
        assert len(previous) <= 20 and previous[-5:] == current[:5]
    # without the overlaps, the chunks are the text
    assert (
        TOK.decode([t for i, chunk in enumerate(ids) for t in (chunk if i == 0 else chunk[5:])])
        == text
    )


def test_overlap_never_splits_a_character() -> None:
    chunks = chunk_text("ü" * 30, 8, overlap=3, tokenizer=TOK)  # "ü" is two byte tokens
    assert all(set(c) == {"ü"} and size(c) <= 8 for c in chunks)
    assert len(chunks) > 1


def test_empty_text_and_bad_arguments() -> None:
    assert chunk_text("", 10, tokenizer=TOK) == []
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_text("x", 0, tokenizer=TOK)
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("x", 5, overlap=5, tokenizer=TOK)


def test_works_with_hosted_encodings() -> None:
    from sdk.tokens.hosted import estimate_tokenizer

    tok = estimate_tokenizer("any")
    text = "Exact local token counting. " * 40
    chunks = chunk_text(text, 16, tokenizer=tok)
    assert "".join(chunks) == text and all(tok.count(c) <= 16 for c in chunks)
