"""``register_tokenizer``: a tokenizer the client is given (here: read from a GGUF file) is held
like a fetched one — counts and the default budget use it with no request — and a chat whose
prompt depends on the server (tools) is asked of the server, never counted wrong as exact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from kit.clients import Api
from kit.tokenizer_server import MODEL, USER, FakeServer

import sdk
from sdk import Endpoint
from sdk.tokens import ModelTokenizer, tokenizer_from_gguf

WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {}}}


@pytest.fixture(scope="module")
def tok(tiny_gguf: Path) -> ModelTokenizer:
    return tokenizer_from_gguf(tiny_gguf)  # a 512-token window


def too_long(tok: ModelTokenizer) -> list[dict[str, Any]]:
    assert tok.context_length is not None
    return [{"role": "user", "content": "the " * tok.context_length}]


def test_a_registered_tokenizer_is_used_without_a_request(
    api: Api, server: FakeServer, tok: ModelTokenizer
) -> None:
    client = api.client(server)
    client.register_tokenizer(MODEL, tok)  # no I/O, on both clients
    assert api.run(lambda c: c.tokenizer(MODEL), client) is tok
    assert api.run(lambda c: c.tokenizer(MODEL), client.with_options(timeout=3)) is tok
    count = api.run(lambda c: c.count_tokens(MODEL, messages=USER), client)
    assert (count.tokens, count.exact, count.source) == (tok.count_chat(USER), True, "gguf")
    assert count.context_length == 512
    assert server.requests == []


def test_it_replaces_a_fetched_tokenizer(api: Api, server: FakeServer, tok: ModelTokenizer) -> None:
    client = api.client(server)
    assert api.run(lambda c: c.tokenizer(MODEL), client).source == "server"
    client.register_tokenizer(MODEL, tok)
    assert api.run(lambda c: c.tokenizer(MODEL), client) is tok


def test_the_default_budget_refuses_an_over_long_chat_sending_nothing(
    api: Api, server: FakeServer, tok: ModelTokenizer
) -> None:
    client = api.client(server)
    client.register_tokenizer(MODEL, tok)
    with pytest.raises(sdk.ContextWindowExceededError) as info:
        api.run(
            lambda c: c.chat.completions.create(model=MODEL, messages=too_long(tok), max_tokens=8),
            client,
        )
    assert server.requests == []
    assert info.value.exact and info.value.context_length == 512


def test_tools_are_counted_by_the_server(api: Api, server: FakeServer, tok: ModelTokenizer) -> None:
    """How a server shows tools to a model whose template has no tool support is its own: a
    model file cannot say, so the count is the server's (its /tokenize) or an estimate."""
    client = api.client(server)
    client.register_tokenizer(MODEL, tok)
    count = api.run(lambda c: c.count_tokens(MODEL, messages=USER, tools=[WEATHER]), client)
    assert (count.exact, count.source) == (True, "tokenize")
    assert json.loads(server.requests[-1].content)["tools"] == [WEATHER]
    none = api.run(
        lambda c: c.count_tokens(MODEL, messages=USER, tools=[WEATHER], tool_choice="none"), client
    )
    assert none.source == "gguf"  # no tools in the prompt: the file's count is exact


def test_without_a_way_to_count_tools_the_count_is_an_estimate(
    api: Api, tok: ModelTokenizer
) -> None:
    server = FakeServer(has_tokenize=False)
    client = api.client(server)
    client.register_tokenizer(MODEL, tok)
    with pytest.warns(sdk.tokens.TokenCountWarning, match="no endpoint"):
        count = api.run(lambda c: c.count_tokens(MODEL, messages=USER, tools=[WEATHER]), client)
    assert (count.exact, count.source) == (False, "gguf")
    assert count.tokens == tok.count_chat(USER, tools=[WEATHER])


def test_the_default_budget_leaves_a_chat_with_tools_to_the_server(
    api: Api, server: FakeServer, tok: ModelTokenizer
) -> None:
    """ "auto" never adds a round trip and never refuses on an estimate."""
    client = api.client(server)
    client.register_tokenizer(MODEL, tok)
    api.run(
        lambda c: c.chat.completions.create(
            model=MODEL, messages=too_long(tok), tools=[WEATHER], max_tokens=8
        ),
        client,
    )
    assert server.paths() == ["POST /v1/chat/completions"]


def test_a_prompt_with_tools_is_refused(api: Api, server: FakeServer) -> None:
    with pytest.raises(sdk.InvalidRequestParamsError, match="tools belong to a chat"):
        api.run(lambda c: c.count_tokens(MODEL, prompt="hi", tools=[WEATHER]), api.client(server))


@pytest.mark.parametrize(
    ("model", "tokenizer", "message"),
    [("", None, "model must be a non-empty string"), (MODEL, "gpt2", "sdk.tokens.Tokenizer")],
)
def test_what_cannot_be_registered(
    api: Api, server: FakeServer, tok: ModelTokenizer, model: str, tokenizer: Any, message: str
) -> None:
    with pytest.raises(sdk.InvalidRequestParamsError, match=message):
        api.client(server).register_tokenizer(model, tokenizer or tok)


def test_a_router_registers_on_every_endpoint_serving_the_model(
    api: Api, tok: ModelTokenizer
) -> None:
    servers = {"a": FakeServer(), "b": FakeServer(), "c": FakeServer()}

    def hosts(request: httpx.Request) -> httpx.Response:
        return servers[request.url.host.removesuffix(".test")](request)

    endpoints = [
        Endpoint("http://a.test/v1", aliases={"public": MODEL}),
        Endpoint("http://b.test/v1", aliases={"public": MODEL}),
        Endpoint("http://c.test/v1", models={"something-else"}),
    ]
    router = api.router(hosts, endpoints)
    router.register_tokenizer("public", tok)
    registry = router._policies.tokenizers
    assert registry.get("http://a.test/", MODEL) is tok
    assert registry.get("http://b.test/", MODEL) is tok
    assert registry.get("http://c.test/", "public") is None
    count = api.run(lambda r: r.count_tokens("public", messages=USER), router)
    assert count.source == "gguf" and all(not s.requests for s in servers.values())

    other = api.router(hosts, endpoints)
    other.pin("b.test").register_tokenizer("public", tok)
    assert other._policies.tokenizers.get("http://a.test/", MODEL) is None
    assert other._policies.tokenizers.get("http://b.test/", MODEL) is tok
    with pytest.raises(sdk.NoEndpointError):
        other.pin("c.test").register_tokenizer("public", tok)
