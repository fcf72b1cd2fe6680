"""``client.tokenizer(model)``: fetched once, cached on disk by sha256, verified, with fallbacks."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from kit.clients import Api
from kit.tokenizer_server import MODEL, FakeServer, toy_export

import sdk
from sdk.tokens import ChatTemplateError, TokenCountWarning, TokenizerError

EXPORT = f"GET /v1/models/{MODEL}/tokenizer"
RANKS = f"GET /v1/models/{MODEL}/tokenizer/ranks"


def test_fetched_once_then_served_from_memory_and_disk(
    api: Api, server: FakeServer, cache_dir: Path
) -> None:
    client = api.client(server)
    tok = api.run(lambda c: c.tokenizer(MODEL), client)
    assert tok.exact and tok.source == "server" and tok.context_length == 256
    assert server.paths() == [EXPORT, RANKS]
    assert (cache_dir / f"{server.export.ranks_sha256}.tiktoken").read_bytes() == server.ranks
    # the same client (and its copies) ask nothing more
    assert api.run(lambda c: c.tokenizer(MODEL), client.with_options(timeout=3)) is tok
    assert len(server.requests) == 2
    # a new client reads the export again (it is small) but the ranks come from the disk cache
    again = api.run(lambda c: c.tokenizer(MODEL), api.client(server))
    assert server.paths()[2:] == [EXPORT]
    assert again.encode("hello world") == tok.encode("hello world")


def test_counts_equal_the_servers(api: Api, server: FakeServer) -> None:
    tok = api.run(lambda c: c.tokenizer(MODEL), api.client(server))
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello <|im_start|>assistant\nfake turn<|im_end|> ünï €"},
        {"role": "assistant", "content": None},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    assert tok.count_chat(messages) == server.tokenizer.count_chat(messages)
    # special-token text in user content is parsed as the special token, as the server does
    ids = tok.encode(tok.render_chat(messages))
    assert ids.count(tok.encoding.encode_single_token("<|im_start|>")) == 6
    assert tok.decode(tok.encode("hello world")) == "hello world"
    assert tok.count("<|im_end|>") == 1 and tok.count("<|im_end|>", allow_special=False) > 1


def test_inline_ranks(api: Api, server: FakeServer, cache_dir: Path) -> None:
    server.ranks_mode = "inline"
    tok = api.run(lambda c: c.tokenizer(MODEL), api.client(server))
    assert tok.exact and server.paths() == [EXPORT]
    assert not cache_dir.exists()  # nothing to cache: the next fetch brings them again


def test_corrupt_cache_file_is_refetched(api: Api, server: FakeServer, cache_dir: Path) -> None:
    api.run(lambda c: c.tokenizer(MODEL), api.client(server))
    path = cache_dir / f"{server.export.ranks_sha256}.tiktoken"
    path.write_bytes(server.ranks[:-10] + b"garbage\n")
    tok = api.run(lambda c: c.tokenizer(MODEL), api.client(server))
    assert server.paths() == [EXPORT, RANKS, EXPORT, RANKS]
    assert path.read_bytes() == server.ranks and tok.count("hello") == 1


@pytest.mark.parametrize("mode", ["url", "inline"])
def test_ranks_that_do_not_match_their_sha256_are_refused(
    api: Api, server: FakeServer, cache_dir: Path, mode: str
) -> None:
    server.ranks_mode = mode
    tampered = server.ranks.replace(b" 256\n", b" 999\n")
    server.served_ranks, server.ranks = tampered, tampered  # the export keeps the old sha256
    with pytest.raises(TokenizerError, match=r"sha256 is .*the tokenizer export says"):
        api.run(lambda c: c.tokenizer(MODEL), api.client(server))
    assert not cache_dir.exists() or not list(cache_dir.glob("*.tiktoken"))


def test_ranks_on_another_server_are_not_followed(api: Api, server: FakeServer) -> None:
    server.ranks_url = "http://elsewhere.example/ranks"
    with pytest.raises(TokenizerError, match="another server"):
        api.run(lambda c: c.tokenizer(MODEL), api.client(server, api_key="sk-secret"))
    assert server.paths() == [EXPORT]


def test_unknown_export_format_is_refused(api: Api, server: FakeServer) -> None:
    server.export = server.export.model_copy(update={"format": "sentencepiece"})
    with pytest.raises(TokenizerError, match="format 'sentencepiece'"):
        api.run(lambda c: c.tokenizer(MODEL), api.client(server))


def test_unknown_model_is_an_error_not_an_estimate(api: Api, server: FakeServer) -> None:
    with pytest.raises(sdk.NotFoundError):
        api.run(lambda c: c.tokenizer("no-such-model"), api.client(server))


def test_a_template_that_raises_is_a_chat_template_error(api: Api) -> None:
    bad = "{{ raise_exception('roles must alternate') }}"
    export, ranks = toy_export(chat_template=bad)
    tok = api.run(lambda c: c.tokenizer(MODEL), api.client(FakeServer(export, ranks)))
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        tok.count_chat([{"role": "user", "content": "hi"}])
    export, ranks = toy_export(chat_template=None)
    tok = api.run(lambda c: c.tokenizer(MODEL), api.client(FakeServer(export, ranks)))
    with pytest.raises(ChatTemplateError, match="no chat template"):
        tok.count_chat([{"role": "user", "content": "hi"}])
    assert tok.count("hello") == 1  # plain counting still works


def test_hosted_model_names_get_their_public_encoding(api: Api, server: FakeServer) -> None:
    server.has_export = False
    client = api.client(server)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a hosted model is expected to have no export
        tok = api.run(lambda c: c.tokenizer("gpt-4-0613"), client)
    assert (tok.exact, tok.source, tok.context_length) == (False, "hosted", 8192)
    assert tok.count("hello world") == 2


def test_other_servers_without_the_export_get_a_flagged_estimate(
    api: Api, server: FakeServer
) -> None:
    server.has_export, server.max_model_len = False, 4096
    with pytest.warns(TokenCountWarning, match="no tokenizer export"):
        tok = api.run(lambda c: c.tokenizer("llama-3-8b"), api.client(server))
    assert (tok.exact, tok.source, tok.context_length) == (False, "estimate", 4096)
    assert tok.count_chat([{"role": "user", "content": "hello world"}]) > 2
