"""Exact counts against the peer, chat by chat (``kit.peer_chats``): ``count_tokens`` must equal
the ``usage.prompt_tokens`` the server reports whenever it says ``exact=True``.

Two ways to count, each checked on every chat:

* from the model file the peer serves (``LLM_SDK_PEER_GGUF``): ``tokenizer_from_gguf``, given
  to the client with ``register_tokenizer`` — no request at all;
* the way the server allows without a file: its tokenizer export (server_ref), its tokenize
  endpoints (vLLM; llama.cpp's ``/apply-template`` + ``/tokenize``), or an estimate.

Chats whose prompt depends on the server (tools, a final assistant turn) are estimates for a
model file's tokenizer; the client then asks the server, and the count is exact only if the
server could answer.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from kit.peer import Peer
from kit.peer_chats import CHATS, PREFILL, TOOL, TOOL_CHATS
from kit.recording import Recording

import sdk
from sdk.tokens import ModelTokenizer, TokenCountWarning, tokenizer_from_gguf

Chat = list[dict[str, Any]]


class Usage:
    """The server's ``usage.prompt_tokens`` for a chat, asked once per chat."""

    def __init__(self, client: sdk.Client, model: str) -> None:
        self.client, self.model = client, model
        self.seen: dict[str, int] = {}

    def __call__(self, chat: Chat, tools: list[Any] | None = None) -> int:
        key = json.dumps([chat, tools])
        if key not in self.seen:
            extra = {"tools": tools} if tools else {}
            try:
                reply = self.client.chat.completions.create(
                    model=self.model, messages=chat, max_tokens=1, temperature=0, **extra
                )
            except sdk.BadRequestError as exc:
                if not tools:
                    raise
                pytest.skip(f"the server takes no tools: {exc.message}")
            assert reply.usage is not None
            self.seen[key] = reply.usage.prompt_tokens
        return self.seen[key]


@pytest.fixture(scope="module")
def usage(peer: Peer) -> Iterator[Usage]:
    with peer.client(token_budget=None) as client:
        yield Usage(client, peer.model)


@pytest.fixture(scope="module")
def gguf_tokenizer(peer: Peer) -> ModelTokenizer:
    if peer.gguf is None:
        pytest.skip(f"the GGUF {peer.name} serves is not known (set LLM_SDK_PEER_GGUF)")
    return tokenizer_from_gguf(peer.gguf, context_length=peer.context)


@pytest.fixture(scope="module")
def from_file(peer: Peer, gguf_tokenizer: ModelTokenizer) -> Iterator[sdk.Client]:
    with peer.client() as client:
        client.register_tokenizer(peer.model, gguf_tokenizer)
        yield client


@pytest.fixture(scope="module")
def from_server(peer: Peer) -> Iterator[sdk.Client]:
    with peer.client() as client, warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenCountWarning)  # the estimates say so
        yield client


def test_there_are_at_least_fifty_chats() -> None:
    assert len(CHATS) >= 50


@pytest.mark.parametrize("chat", CHATS, ids=[f"chat{i:02d}" for i in range(len(CHATS))])
def test_counts_from_the_model_file(
    from_file: sdk.Client, peer: Peer, usage: Usage, chat: Chat
) -> None:
    count = from_file.count_tokens(peer.model, messages=chat)
    assert (count.source, count.exact) == ("gguf", True)
    assert count.tokens == usage(chat)


@pytest.mark.parametrize("chat", CHATS, ids=[f"chat{i:02d}" for i in range(len(CHATS))])
def test_counts_from_the_server(
    from_server: sdk.Client, peer: Peer, usage: Usage, chat: Chat
) -> None:
    count = from_server.count_tokens(peer.model, messages=chat)
    if peer.counts is not None:
        assert count.source == peer.counts
    if not count.exact:
        pytest.skip(f"{peer.name} gives no exact chat counts without a file ({count.source})")
    assert count.tokens == usage(chat)


SERVER_DEPENDENT = [(chat, None) for chat in PREFILL] + [(chat, [TOOL]) for chat in TOOL_CHATS]


@pytest.mark.parametrize(
    ("chat", "tools"),
    SERVER_DEPENDENT,
    ids=[f"prefill{i}" for i in range(len(PREFILL))]
    + [f"tools{i}" for i in range(len(TOOL_CHATS))],
)
@pytest.mark.parametrize("way", ["from_file", "from_server"])
def test_server_dependent_chats_are_never_wrongly_exact(
    request: pytest.FixtureRequest,
    way: str,
    peer: Peer,
    usage: Usage,
    chat: Chat,
    tools: list[Any] | None,
) -> None:
    client: sdk.Client = request.getfixturevalue(way)
    count = client.count_tokens(peer.model, messages=chat, tools=tools)
    if way == "from_file":
        tokenizer = request.getfixturevalue("gguf_tokenizer")
        assert not tokenizer.exact_for(chat, tools=tools)
        assert not (count.exact and count.source == "gguf")  # asked the server, or estimated
    if count.exact:
        assert count.tokens == usage(chat, tools)


def _too_long(context: int) -> Chat:
    return [{"role": "user", "content": "tick tock " * context}]


@pytest.mark.parametrize("budget", ["auto", sdk.TokenBudget()], ids=["auto", "TokenBudget"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_file_tokenizer_refuses_an_over_long_chat_sending_nothing(
    peer: Peer, gguf_tokenizer: ModelTokenizer, budget: Any, mode: str
) -> None:
    """The default budget ("auto") or an explicit ``TokenBudget`` with a registered exact
    tokenizer: refused locally, and not one request made."""
    assert gguf_tokenizer.context_length is not None
    recording = Recording()
    args: dict[str, Any] = {
        "model": peer.model,
        "messages": _too_long(gguf_tokenizer.context_length),
        "max_tokens": 4,
        "budget": budget,
    }
    with pytest.raises(sdk.ContextWindowExceededError) as info:
        if mode == "sync":
            with peer.client(transport=recording) as client:
                client.register_tokenizer(peer.model, gguf_tokenizer)
                client.chat.completions.create(**args)
        else:
            async with peer.async_client(transport=recording) as aclient:
                aclient.register_tokenizer(peer.model, gguf_tokenizer)
                await aclient.chat.completions.create(**args)
    assert recording.sent == []
    assert info.value.exact and info.value.context_length == gguf_tokenizer.context_length
