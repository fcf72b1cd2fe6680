"""``sdk.tokens.hf``: a ``tokenizer.json`` read by the ``tokenizers`` library, exported by the
server as ``"hf-tokenizers"`` and rebuilt by the client, counting what the server counts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer as Library

from sdk.tokens import HFTokenizer, TokenizerError, export_hf_tokenizer, tokenizer_from_export
from sdk.tokens.export import check_export
from sdk.tokens.hf import hf_available, load_tokenizer_json
from sdk.types import TokenizerExport
from server_ref.loading.hf_tokenizer import HFTokenizer as ServerTokenizer

TEXTS = [
    "hello world",
    "The quick brown fox jumps over the lazy dog. " * 6,  # past the file's 24-token padding
    "日本語 text",
    "unknown ünïcödé ✨ and [SEP] inside",
    "",
]


@pytest.fixture(scope="module")
def file(tiny_bert: Path) -> bytes:
    return (tiny_bert / "tokenizer.json").read_bytes()


@pytest.fixture(scope="module")
def tok(file: bytes) -> HFTokenizer:
    return HFTokenizer.from_json(file, model="tiny-bert", context_length=16)


@pytest.mark.parametrize("text", TEXTS)
def test_counts_are_the_librarys_with_special_tokens_and_no_padding(
    tok: HFTokenizer, file: bytes, text: str
) -> None:
    library = Library.from_str(file.decode())
    library.no_padding()
    library.no_truncation()

    assert tok.encode(text) == library.encode(text).ids
    assert tok.count(text) == len(library.encode(text).ids)
    assert tok.encode(text)[0] == tok.special_tokens["[CLS]"]


@pytest.mark.parametrize("text", TEXTS)
def test_counts_are_the_servers(tok: HFTokenizer, tiny_bert: Path, text: str) -> None:
    server = ServerTokenizer.from_file(tiny_bert / "tokenizer.json", max_tokens=16)
    assert tok.encode(text) == server.encode(text)
    assert tok.count(text) == server.count(text)


def test_what_it_knows_and_what_it_refuses(tok: HFTokenizer) -> None:
    assert (tok.model, tok.exact, tok.source, tok.context_length) == (
        "tiny-bert",
        True,
        "server",
        16,
    )
    assert tok.special_tokens == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    assert tok.decode(tok.encode("hello world")) == "[CLS] hello world [SEP]"
    assert tok.encode_batch(["hello", "world"]) == [tok.encode("hello"), tok.encode("world")]
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.decode([tok.n_vocab])
    with pytest.raises(TokenizerError, match="'tiny-bert' has no chat template"):
        tok.count_chat([{"role": "user", "content": "hi"}])
    assert "HFTokenizer(model='tiny-bert', source='server'" in repr(tok)


def test_the_export_round_trip(file: bytes, tok: HFTokenizer) -> None:
    export, linked = export_hf_tokenizer(
        model="tiny-bert",
        tokenizer_json=file,
        special_tokens=tok.special_tokens,
        n_vocab=tok.n_vocab,
        context_length=16,
    )
    assert linked == file and export.format == "hf-tokenizers" and export.pattern == ""
    with pytest.raises(TokenizerError, match="neither 'ranks' nor 'ranks_url'"):
        check_export(export)  # the server links or inlines it
    wire = TokenizerExport.model_validate_json(
        export.model_copy(update={"ranks": ""}).model_dump_json()
    )

    rebuilt = tokenizer_from_export(wire, file, model="alias")
    assert isinstance(rebuilt, HFTokenizer) and rebuilt.model == "alias"
    assert [rebuilt.encode(t) for t in TEXTS] == [tok.encode(t) for t in TEXTS]
    with pytest.raises(TokenizerError, match="corrupt or was changed in transit"):
        tokenizer_from_export(wire, file + b" ")


def test_other_formats_and_a_bpe_export_without_pattern_are_refused(file: bytes) -> None:
    base = {"model": "m", "special_tokens": {}, "n_vocab": 1, "ranks_sha256": "0" * 64}
    weird = TokenizerExport(format="sentencepiece", **base)
    with pytest.raises(TokenizerError, match="reads 'tiktoken-bpe' and 'hf-tokenizers'"):
        tokenizer_from_export(weird, file)
    with pytest.raises(TokenizerError, match="has no pattern"):
        tokenizer_from_export(TokenizerExport(**base), file)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"\xff\xfe", "cannot be read"), (b"{}", "cannot be read"), ("[1, 2]", "cannot be read")],
)
def test_a_bad_file_is_a_tokenizer_error(data: bytes | str, message: str) -> None:
    with pytest.raises(TokenizerError, match=message):
        load_tokenizer_json(data)


def test_without_the_library_the_error_names_the_extra(
    file: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import fails
    with pytest.raises(TokenizerError, match=r"pip install 'llm-sdk\[hf\]'"):
        HFTokenizer.from_json(file, model="m")
    assert not hf_available()  # and the client knows not to try (see the tokenizer flow)
