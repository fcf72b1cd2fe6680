"""Counting with llama.cpp's servers' own endpoints, replayed from their recorded answers.

``tests/fixtures/llamacpp/*.json`` hold what ``llama-server`` and llama-cpp-python's server
answered the SDK (``scripts/run_peer_suite.py --record``): real 404 bodies, llama.cpp's
``{"tokens": []}`` for vLLM's fields, its 400 for a chat its template refuses, the ``usage``
of the same chats. Detection happens once per server; an endpoint taken away or an answer that
makes no sense leaves an estimate, never a wrong exact count.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from kit.clients import Api
from kit.recorded import API_KEY, CHATS, PROMPTS, REFUSED, TOOLS, Replay
from kit.recording import assert_kept

import sdk
from sdk._policies.counting import TokenCount
from sdk.tokens import TokenCountWarning

BASE = "http://peer:8080/v1"
CHAT = "/v1/chat/completions"


def client(api: Api, server: Replay, key: str = API_KEY) -> Any:
    return api.client(server, base_url=BASE, api_key=key)


def count(api: Api, c: Any, model: str, **request: Any) -> TokenCount:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenCountWarning)
        result: TokenCount = api.run(lambda c: c.count_tokens(model, **request), c)
    return result


def chat_usage(server: Replay, chat: list[dict[str, Any]], tools: Any = None) -> int:
    return int(server.usage(CHAT, messages=chat, tools=tools)["prompt_tokens"])


def prompt_usage(server: Replay, prompt: str) -> int:
    return int(server.usage("/v1/completions", prompt=prompt)["prompt_tokens"])


def test_llama_server_chats_count_with_apply_template_then_tokenize(api: Api) -> None:
    server = Replay.load("llama-server")
    c = client(api, server)
    with pytest.warns(TokenCountWarning, match="no tokenizer export"):
        first = api.run(lambda c: c.count_tokens(server.model, messages=CHATS["plain"]), c)
    assert first == TokenCount(chat_usage(server, CHATS["plain"]), True, "tokenize", 2048)
    model = f"/v1/models/{server.model}"
    assert server.paths() == [
        f"GET {model}/tokenizer",  # no export: 404
        f"GET {model}",  # no model card either
        "GET /props",  # n_ctx: 2048
        "POST /tokenize",  # vLLM's fields: llama.cpp answers {"tokens": []}, ruled out
        "POST /apply-template",
        "POST /tokenize",
    ]
    for name in ("special", "prefill"):  # the dialect is remembered
        del server.requests[:]
        got = count(api, c, server.model, messages=CHATS[name])
        assert (got.tokens, got.exact) == (chat_usage(server, CHATS[name]), True)
        assert server.paths() == ["POST /apply-template", "POST /tokenize"]


def test_llama_server_renders_tools_as_its_chats_do(api: Api) -> None:
    server = Replay.load("llama-server")
    got = count(api, client(api, server), server.model, messages=CHATS["plain"], tools=TOOLS)
    assert (got.tokens, got.exact) == (chat_usage(server, CHATS["plain"], TOOLS), True)
    sent = json.loads(server.requests[-2].content)
    assert server.paths()[-2] == "POST /apply-template" and sent["tools"] == TOOLS


@pytest.mark.parametrize("name", list(PROMPTS))
def test_llama_server_prompts_count_with_tokenize(api: Api, name: str) -> None:
    server = Replay.load("llama-server")
    got = count(api, client(api, server), server.model, prompt=PROMPTS[name])
    assert got == TokenCount(prompt_usage(server, PROMPTS[name]), True, "tokenize", 2048)
    assert server.paths()[-2:] == ["POST /tokenize", "POST /tokenize"]  # vLLM's, then its own
    assert json.loads(server.requests[-1].content) == {
        "model": server.model,
        "content": PROMPTS[name],
        "add_special": True,  # BOS/EOS as its completions add them
        "parse_special": True,
        "with_pieces": False,
    }


def test_a_chat_the_template_refuses_is_the_servers_400_once_known(api: Api) -> None:
    server = Replay.load("llama-server")
    c = client(api, server)
    count(api, c, server.model, messages=CHATS["plain"])
    with pytest.raises(sdk.BadRequestError, match="2 or more assistant messages"):
        api.run(lambda c: c.count_tokens(server.model, messages=REFUSED), c)


def test_llama_cpp_python_counts_prompts_but_not_chats(api: Api) -> None:
    server = Replay.load("llama-cpp-python")
    c = client(api, server)
    with pytest.warns(TokenCountWarning) as caught:
        chat = api.run(lambda c: c.count_tokens(server.model, messages=CHATS["plain"]), c)
    assert (chat.exact, chat.source, chat.context_length) == (False, "estimate", None)
    assert "no endpoint this client can count chats with" in str(caught[-1].message)
    assert server.paths()[-2:] == ["POST /tokenize", "POST /apply-template"]  # both 404
    del server.requests[:]
    again = count(api, c, server.model, messages=CHATS["special"])
    assert not again.exact and server.requests == []  # remembered: nothing asked
    for prompt in PROMPTS.values():
        got = count(api, c, server.model, prompt=prompt)
        expected = (prompt_usage(server, prompt), True, "tokenize")
        assert (got.tokens, got.exact, got.source) == expected
    assert server.paths()[-1] == "POST /extras/tokenize"


def test_half_implemented_tokenize_without_apply_template(api: Api) -> None:
    server = Replay.load("llama-server").without("/apply-template")
    c = client(api, server)
    with pytest.warns(TokenCountWarning) as caught:
        chat = api.run(lambda c: c.count_tokens(server.model, messages=CHATS["plain"]), c)
    assert "no endpoint this client can count chats" in str(caught[-1].message)
    assert not chat.exact and chat.source == "estimate"
    prompt = count(api, c, server.model, prompt=PROMPTS["special"])
    assert (prompt.tokens, prompt.exact) == (prompt_usage(server, PROMPTS["special"]), True)


@pytest.mark.parametrize(
    "answer",
    [
        {"tokens": []},  # llama.cpp's answer to fields it does not read
        {"tokens": [], "count": 0},
        {"tokens": [1, 2], "count": 5},
        {"ids": [1, 2, 3]},
    ],
    ids=["empty", "empty-count", "count-not-tokens", "unknown-shape"],
)
def test_answers_that_make_no_sense_are_never_exact(api: Api, answer: dict[str, Any]) -> None:
    server = Replay.load("llama-server").answering("/tokenize", lambda _: answer)
    c = client(api, server)
    chat = count(api, c, server.model, messages=CHATS["plain"])
    prompt = count(api, c, server.model, prompt=PROMPTS["plain"])
    assert not chat.exact and not prompt.exact
    assert (chat.source, prompt.source) == ("estimate", "estimate")


def test_the_context_window_comes_from_props(api: Api) -> None:
    for name, context in (("llama-server", 2048), ("llama-cpp-python", None)):
        server = Replay.load(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TokenCountWarning)
            tok = api.run(lambda c, s=server: c.tokenizer(s.model), client(api, server))
        assert (tok.source, tok.context_length) == ("estimate", context)


@pytest.mark.parametrize("name", ["llama-server", "llama-cpp-python"])
def test_a_wrong_key_is_an_authentication_error(api: Api, name: str) -> None:
    server = Replay.load(name)
    with pytest.raises(sdk.AuthenticationError) as info:
        api.run(lambda c: c.models.list(), client(api, server, key="sk-wrong"))
    assert info.value.status_code == 401


@pytest.mark.parametrize("name", ["llama-server", "llama-cpp-python"])
def test_no_field_of_their_replies_is_dropped(api: Api, name: str) -> None:
    server = Replay.load(name)
    c = client(api, server)
    for messages in CHATS.values():
        reply = api.run(
            lambda c, m=messages: c.chat.completions.create(
                model=server.model, messages=m, max_tokens=1, temperature=0
            ),
            c,
        )
        recorded = next(server.find(path=CHAT, body=json.loads(server.requests[-1].content)))
        assert_kept(reply.model_dump(mode="json"), recorded["response"])
