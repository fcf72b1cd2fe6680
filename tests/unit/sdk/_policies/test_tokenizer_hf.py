"""``client.tokenizer(model)`` for an embedding model: the ``"hf-tokenizers"`` export read
with the ``tokenizers`` package, and without it the server's ``/tokenize``."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from kit.clients import Api
from kit.tokenizer_server import FakeServer

from sdk._policies import remote
from sdk.tokens import HFTokenizer, TokenCountWarning, TokenizerError, export_hf_tokenizer

MODEL = "tiny-bert"
EXPORT = f"GET /v1/models/{MODEL}/tokenizer"
RANKS = f"GET /v1/models/{MODEL}/tokenizer/ranks"
TEXT = "The quick brown fox jumps over the lazy dog. " * 4


@pytest.fixture
def server(tiny_bert: Path) -> FakeServer:
    """A server exporting the tiny BERT's tokenizer.json, its /tokenize counting with it."""
    file = (tiny_bert / "tokenizer.json").read_bytes()
    local = HFTokenizer.from_json(file, model=MODEL)
    export, _ = export_hf_tokenizer(
        model=MODEL,
        tokenizer_json=file,
        special_tokens=local.special_tokens,
        n_vocab=local.n_vocab,
        context_length=16,
    )
    return FakeServer(export=export, ranks=file, max_model_len=16)


def test_the_exported_tokenizer_json_counts_exactly(
    api: Api, server: FakeServer, cache_dir: Path
) -> None:
    client = api.client(server)
    tok = api.run(lambda c: c.tokenizer(MODEL), client)

    assert isinstance(tok, HFTokenizer)
    assert (tok.exact, tok.source, tok.context_length) == (True, "server", 16)
    assert server.paths() == [EXPORT, RANKS]
    assert (cache_dir / f"{server.export.ranks_sha256}.tiktoken").read_bytes() == server.ranks
    assert tok.count(TEXT) == server.tokenizer.count(TEXT) == len(server.tokenizer.encode(TEXT))
    counted = api.run(lambda c: c.count_tokens(MODEL, prompt=TEXT), client)
    assert (counted.tokens, counted.exact, counted.source) == (tok.count(TEXT), True, "server")
    assert server.paths() == [EXPORT, RANKS]  # counted locally: no /tokenize
    with pytest.raises(TokenizerError, match="no chat template"):
        api.run(
            lambda c: c.count_tokens(MODEL, messages=[{"role": "user", "content": "hi"}]), client
        )


def test_inline_export_needs_no_second_request(api: Api, server: FakeServer) -> None:
    server.ranks_mode = "inline"
    tok = api.run(lambda c: c.tokenizer(MODEL), api.client(server))
    assert tok.exact and server.paths() == [EXPORT]


def test_without_tokenizers_counts_ask_the_server_and_a_warning_names_the_extra(
    api: Api, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "hf_available", lambda: False)
    client = api.client(server)

    with pytest.warns(TokenCountWarning, match=r"pip install 'llm-sdk\[hf\]'"):
        tok = api.run(lambda c: c.tokenizer(MODEL), client)
    assert (tok.exact, tok.source, tok.context_length) == (False, "estimate", 16)
    assert server.paths() == [EXPORT]  # the file is not fetched: it could not be read

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: the client remembers the tokenizer
        counted = api.run(lambda c: c.count_tokens(MODEL, prompt=TEXT), client)
    assert (counted.tokens, counted.exact, counted.source) == (
        server.tokenizer.count(TEXT),
        True,
        "tokenize",
    )
    assert server.paths() == [EXPORT, "POST /tokenize"]


def test_a_format_this_client_does_not_read_is_a_clear_error(api: Api, server: FakeServer) -> None:
    server.export = server.export.model_copy(update={"format": "sentencepiece"})
    with pytest.raises(TokenizerError, match="'sentencepiece' of 'tiny-bert' is not supported"):
        api.run(lambda c: c.tokenizer(MODEL), api.client(server))
