"""all-MiniLM-L6-v2 through our embedder against sentence-transformers and the tokenizers library.

The model comes from the local cache (pulled on first use, like the chat model); the reference
loads the very same folder. sentence-transformers is in the ``dev`` extra; where it cannot be
imported the comparison is skipped with the reason, and the tokenizer checks still run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer

from server_ref.engine.build_embedder import build_embedder
from server_ref.engine.embedder import Embedder
from server_ref.engine.embedding_types import InputTooLongError
from server_ref.loading.registry import DEFAULT_EMBEDDING_MODEL, pull

pytestmark = pytest.mark.e2e

MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length

PARAGRAPH = (
    "Retrieval-augmented generation embeds a corpus of passages, finds the ones closest to a "
    "question and hands them to a language model, which answers from them. The quality of the "
    "answer depends on the embeddings as much as on the model. "
)
SHORT = ["a", "I", "ok", "?", "🙂", "日", "x1", "Hello!"]
EMPTY_ISH = [" ", "\n", "\t\t", "   .   ", "\u200b", "\ufeff", "\x00"]
SENTENCES = [
    "The cat sits on the mat.",
    "A man is playing a guitar on stage.",
    "How do I reset my password?",
    "The stock market fell sharply on Monday after the announcement.",
    "Photosynthesis converts light energy into chemical energy.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "I can't believe it's not butter!!!",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "don't, won't, shouldn't've",
]
UNICODE = [
    "Ça va très bien, merci !",
    "Straße, Größe, Maß",
    "naïve café résumé coöperate",
    "Καλημέρα κόσμε",
    "Привет, как дела?",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "안녕하세요 세계",
    "こんにちは世界、今日はいい天気ですね。",
    "我爱自然语言处理。",
    "東京 Tokyo 2024年3月",
    "E = mc² ∑∫√∞ ≠ ≤",
    "1,234,567.89 USD — 12% off",
    "user@example.com https://example.com/path?q=1&lang=en",
]
EMOJI = ["I love pizza 🍕🍕🍕", "👨‍👩‍👧‍👦 family trip", "🇫🇷 flags 🏳️‍🌈 and ✨ sparkles ✨"]
CODE = [
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    '{"name": "llm-sdk", "version": "0.1.0", "tags": ["ai", "sdk"]}',
    "SELECT id, name FROM users WHERE created_at > NOW() - INTERVAL '7 days';",
    '<div class="card"><h1>Title</h1><p>Body &amp; more</p></div>',
    r"^(?P<user>[\w.+-]+)@(?P<host>[\w-]+\.[\w.]+)$",
    'for f in *.txt; do wc -l "$f"; done | sort -n',
    'int main(void) { printf("%d\\n", 42); return 0; }',
]
LONG = [
    PARAGRAPH * 6,  # ~300 tokens of English
    "自然语言处理是人工智能的一个分支。" * 25,  # one token per CJK character
    "def f(x):\n    return x * 2\n" * 40,
    "🙂 hello " * 200,
    " ".join(f"word{i}" for i in range(2000)),  # thousands of tokens
]
TEXTS = SHORT + EMPTY_ISH + SENTENCES + UNICODE + EMOJI + CODE + LONG


def test_the_corpus_is_as_wide_as_promised() -> None:
    assert len(TEXTS) >= 50
    assert len(set(TEXTS)) == len(TEXTS)


@pytest.fixture(scope="module")
def folder() -> Path:
    return pull(DEFAULT_EMBEDDING_MODEL)


@pytest.fixture(scope="module")
def embedder(folder: Path) -> Iterator[Embedder]:
    device = os.environ.get("LLM_SDK_TEST_DEVICE", "cpu")
    e = build_embedder(folder, model_id=DEFAULT_EMBEDDING_MODEL, device=device)
    e.start()
    yield e
    e.shutdown()


@pytest.fixture(scope="module")
def library(folder: Path) -> Tokenizer:
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


@pytest.fixture(scope="module")
def reference(folder: Path) -> Any:
    st = pytest.importorskip(
        "sentence_transformers",
        reason="sentence-transformers is not installed (dev extra; "
        "pip install sentence-transformers torch==2.13.0)",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # a local folder; never ask a hub for anything
        return st.SentenceTransformer(str(folder), device="cpu")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def test_embeddings_match_sentence_transformers(embedder: Embedder, reference: Any) -> None:
    ours = embedder.submit(TEXTS).result(600)
    theirs = reference.encode(TEXTS, batch_size=32, convert_to_numpy=True)
    cos = _cosines(ours.vectors, theirs)

    worst = int(cos.argmin())
    assert cos.min() >= 0.9999, f"cosine {cos.min():.6f} for {TEXTS[worst]!r:.60}"
    np.testing.assert_allclose(np.linalg.norm(ours.vectors, axis=1), 1.0, atol=1e-5)


def test_a_text_embeds_the_same_alone_as_in_the_batch(embedder: Embedder) -> None:
    batch = embedder.submit(TEXTS).result(600).vectors
    for i in (0, 9, len(TEXTS) - 1):
        alone = embedder.submit([TEXTS[i]]).result(60).vectors[0]
        np.testing.assert_allclose(alone, batch[i], atol=1e-5)


def test_token_counts_equal_the_tokenizers_library(embedder: Embedder, library: Tokenizer) -> None:
    result = embedder.submit(TEXTS).result(600)

    for text, count in zip(TEXTS, result.token_counts, strict=True):
        full = len(library.encode(text).ids)  # [CLS] and [SEP] included, as we count
        assert embedder.tokenizer.count(text) == full, text
        assert count == min(full, MAX_TOKENS), text
    assert result.prompt_tokens == sum(min(len(library.encode(t).ids), MAX_TOKENS) for t in TEXTS)


def test_token_ids_equal_sentence_transformers_tokenizer(
    embedder: Embedder, reference: Any
) -> None:
    theirs = reference.tokenize(TEXTS)
    lengths = theirs["attention_mask"].sum(1).tolist()
    ours = embedder.tokenizer.encode_batch(TEXTS)

    for i, enc in enumerate(ours):
        assert enc.ids == theirs["input_ids"][i, : lengths[i]].tolist(), TEXTS[i]


def test_truncation_at_256_tokens(embedder: Embedder, library: Tokenizer) -> None:
    result = embedder.submit(LONG).result(600)

    assert result.token_counts == (MAX_TOKENS,) * len(LONG)
    assert result.truncated == (True,) * len(LONG)
    assert all(len(library.encode(t).ids) > MAX_TOKENS for t in LONG)
    # the text's first 254 tokens between [CLS] and [SEP], given as ids, embed the same
    full = library.encode(LONG[0]).ids
    cut = embedder.submit([[*full[: MAX_TOKENS - 1], full[-1]]]).result(60)
    np.testing.assert_allclose(cut.vectors[0], result.vectors[0], atol=1e-5)
    with pytest.raises(InputTooLongError, match=f"more than the {MAX_TOKENS}"):
        embedder.submit(["fits", LONG[0]], truncate=False).result(60)
    fits = embedder.submit([SENTENCES[0]], truncate=False).result(60)
    assert fits.truncated == (False,)
