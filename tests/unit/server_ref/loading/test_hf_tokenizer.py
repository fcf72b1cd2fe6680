"""tokenizer.json through the ``tokenizers`` library: counts, truncation like the library's own."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from server_ref.loading.bert_weights import ModelFilesError
from server_ref.loading.hf_tokenizer import HFTokenizer

LONG = "the quick brown fox jumps over the lazy dog " * 5  # 45 words


@pytest.fixture(scope="module")
def tok(tiny_bert: Path) -> HFTokenizer:
    return HFTokenizer.from_file(tiny_bert / "tokenizer.json", max_tokens=16)


@pytest.fixture(scope="module")
def library(tiny_bert: Path) -> Tokenizer:
    """The library on the same file, set to truncate at 16 itself."""
    ref = Tokenizer.from_file(str(tiny_bert / "tokenizer.json"))
    ref.no_padding()
    ref.enable_truncation(16)
    return ref


def test_special_tokens_are_added_and_the_files_padding_is_off(tok: HFTokenizer) -> None:
    [enc] = tok.encode_batch(["hello world"])

    assert enc.ids == [2, 14, 15, 3]  # [CLS] hello world [SEP], no [PAD] up to 24
    assert enc.n_tokens == 4 and not enc.truncated
    assert tok.count("hello world") == 4
    assert tok.encode("hello world") == enc.ids
    assert tok.decode(enc.ids) == "hello world"


@pytest.mark.parametrize("text", ["hello world", LONG, "", "   ", "日本語!", "hellos jumping"])
def test_ids_and_counts_equal_the_librarys(
    tok: HFTokenizer, library: Tokenizer, tiny_bert: Path, text: str
) -> None:
    untruncated = Tokenizer.from_file(str(tiny_bert / "tokenizer.json"))
    untruncated.no_padding()
    untruncated.no_truncation()
    [enc] = tok.encode_batch([text])

    assert enc.ids == library.encode(text).ids
    assert enc.n_tokens == len(untruncated.encode(text).ids) == tok.count(text)


def test_truncation_keeps_the_limit_and_the_closing_sep(tok: HFTokenizer) -> None:
    [enc] = tok.encode_batch([LONG])

    assert len(enc.ids) == 16
    assert enc.ids[0] == 2 and enc.ids[-1] == 3  # [CLS] ... [SEP]
    assert enc.n_tokens == 45 + 2
    assert enc.truncated
    assert tok.encode(LONG)[:15] == enc.ids[:15]  # the text's first 14 tokens are kept


def test_a_batch_encodes_each_text_as_alone(tok: HFTokenizer) -> None:
    texts = ["hello", LONG, "the cat sat on the mat"]

    assert tok.encode_batch(texts) == [tok.encode_batch([t])[0] for t in texts]


def test_file_bytes_and_hash_are_kept_for_the_export(tok: HFTokenizer, tiny_bert: Path) -> None:
    assert tok.source == (tiny_bert / "tokenizer.json").read_bytes()
    assert len(tok.sha256) == 64
    assert tok.vocab_size == Tokenizer.from_file(str(tiny_bert / "tokenizer.json")).get_vocab_size()


def test_missing_or_corrupt_file_is_a_model_files_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError, match=r"tokenizer\.json is missing"):
        HFTokenizer.from_file(tmp_path / "tokenizer.json", max_tokens=16)
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": 3}')
    with pytest.raises(ModelFilesError, match=r"tokenizer\.json cannot be read"):
        HFTokenizer.from_file(tmp_path / "tokenizer.json", max_tokens=16)
    (tmp_path / "tokenizer.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ModelFilesError, match=r"tokenizer\.json cannot be read"):
        HFTokenizer.from_file(tmp_path / "tokenizer.json", max_tokens=16)


def test_a_limit_without_room_for_text_is_refused(tiny_bert: Path) -> None:
    with pytest.raises(ValueError, match="no room"):
        HFTokenizer.from_file(tiny_bert / "tokenizer.json", max_tokens=2)
