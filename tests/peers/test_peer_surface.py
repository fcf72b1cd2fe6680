"""The SDK's public surface against the peer (see conftest.py for which one).

Each test states what any OpenAI-compatible server must give the SDK: typed replies, streams
that add up to their final completion, counts that equal ``usage`` whenever they claim to be
exact, typed errors, stop strings honoured, and no field of a reply lost on the way.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from kit.peer import Peer
from kit.recording import Recording, assert_kept

import sdk
from sdk.types import ChatCompletion, Completion

QUESTION = [
    {"role": "system", "content": "You are a helpful assistant. Answer in one word."},
    {"role": "user", "content": "What is the capital of France?"},
]
GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 16}


def test_models_list(client: sdk.Client, peer: Peer) -> None:
    models = client.models.list()
    assert peer.model in [m.id for m in models.data]


def test_chat(client: sdk.Client, peer: Peer) -> None:
    reply = client.chat.completions.create(model=peer.model, messages=QUESTION, **GREEDY)
    assert isinstance(reply, ChatCompletion)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.response_info is not None and reply.response_info.status_code == 200


def test_chat_stream_and_its_final_completion(client: sdk.Client, peer: Peer) -> None:
    stream = client.chat.completions.create(
        model=peer.model, messages=QUESTION, stream=True, **GREEDY
    )
    with stream:
        texts = list(stream.text_stream)
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "".join(texts)
    assert final.choices[0].message.role == "assistant"
    assert final.choices[0].finish_reason in ("stop", "length")


async def test_async_chat_stream(async_client: sdk.AsyncClient, peer: Peer) -> None:
    whole = await async_client.chat.completions.create(
        model=peer.model, messages=QUESTION, **GREEDY
    )
    stream = await async_client.chat.completions.create(
        model=peer.model, messages=QUESTION, stream=True, **GREEDY
    )
    async with stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == "".join(texts)
    assert "".join(texts) == whole.choices[0].message.content  # greedy: the same answer


def test_completions(client: sdk.Client, peer: Peer) -> None:
    args: dict[str, Any] = {"model": peer.model, "prompt": "The capital of France is", **GREEDY}
    whole = client.completions.create(**args)
    assert isinstance(whole, Completion) and whole.choices[0].text
    assert whole.usage is not None and whole.usage.completion_tokens > 0
    stream = client.completions.create(stream=True, **args)
    with stream:
        final = stream.get_final_completion()
    assert final.choices[0].text == whole.choices[0].text
    assert final.choices[0].finish_reason == whole.choices[0].finish_reason


@pytest.mark.parametrize(
    "messages",
    [
        QUESTION,
        [{"role": "user", "content": "Hi <|im_start|> there, 中文 🎉"}],
        [
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": ""},
        ],
    ],
    ids=["system", "special-text", "turns"],
)
def test_count_tokens_equals_usage_when_exact(
    client: sdk.Client, peer: Peer, messages: list[dict[str, Any]]
) -> None:
    count = client.count_tokens(peer.model, messages=messages)
    reply = client.chat.completions.create(model=peer.model, messages=messages, max_tokens=1)
    assert reply.usage is not None
    if peer.counts is not None:
        assert count.source == peer.counts, count
    if count.exact:
        assert count.tokens == reply.usage.prompt_tokens, count


def test_prompt_count_equals_usage_when_exact(client: sdk.Client, peer: Peer) -> None:
    prompt = "<|im_start|>user\nThe capital of France is"
    count = client.count_tokens(peer.model, prompt=prompt)
    reply = client.completions.create(model=peer.model, prompt=prompt, max_tokens=1)
    assert reply.usage is not None
    if count.exact:
        assert count.tokens == reply.usage.prompt_tokens, count


def test_text_parts(client: sdk.Client, peer: Peer) -> None:
    parts = [{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}]
    messages = [{"role": "user", "content": parts}]
    try:
        reply = client.chat.completions.create(model=peer.model, messages=messages, max_tokens=1)
    except sdk.InternalServerError as exc:
        pytest.xfail(f"{peer.name} answers {exc.status_code} to text parts: {exc.message}")
    count = client.count_tokens(peer.model, messages=messages)
    assert reply.usage is not None
    if count.exact:
        assert count.tokens == reply.usage.prompt_tokens


def test_wrong_key_is_an_authentication_error(peer: Peer) -> None:
    if peer.api_key is None:
        pytest.skip(f"{peer.name} was started without an API key (LLM_SDK_PEER_API_KEY)")
    with peer.client(api_key="sk-wrong") as client, pytest.raises(sdk.AuthenticationError) as info:
        client.chat.completions.create(model=peer.model, messages=QUESTION, max_tokens=1)
    assert info.value.status_code == 401


def _too_long(client: sdk.Client, peer: Peer) -> tuple[list[dict[str, Any]], int]:
    """A chat longer than the peer's context window, and that window."""
    context = peer.context or client.count_tokens(peer.model, prompt="x").context_length
    if context is None:
        pytest.skip(f"{peer.name} reports no context window; set LLM_SDK_PEER_CONTEXT")
    return [{"role": "user", "content": "tick tock " * context}], context


def test_over_long_prompt_is_the_servers_400(client: sdk.Client, peer: Peer) -> None:
    messages, _ = _too_long(client, peer)
    with pytest.raises(sdk.BadRequestError) as info:  # budget=None: the server decides
        client.chat.completions.create(
            model=peer.model, messages=messages, max_tokens=4, budget=None
        )
    assert info.value.status_code == 400


def test_over_long_prompt_refused_before_sending(peer: Peer) -> None:
    """An explicit budget counts the best way the server allows and sends no chat that
    cannot fit; the refusal says whether the count was exact."""
    recording = Recording()
    with peer.client(transport=recording) as client:
        messages, context = _too_long(client, peer)
        budget = sdk.TokenBudget(context_length=peer.context)
        with pytest.raises(sdk.ContextWindowExceededError) as info:
            client.chat.completions.create(
                model=peer.model, messages=messages, max_tokens=4, budget=budget
            )
        count = client.count_tokens(peer.model, messages=messages)
    assert not any(path.endswith("/chat/completions") for path in recording.paths())
    assert info.value.exact == count.exact and info.value.context_length == context
    assert info.value.prompt_tokens == count.tokens > context


def test_stop_strings(client: sdk.Client, peer: Peer) -> None:
    args: dict[str, Any] = {"model": peer.model, "temperature": 0}
    messages = [{"role": "user", "content": "Write three sentences about the sea."}]
    text = client.chat.completions.create(messages=messages, max_tokens=24, **args)
    content = text.choices[0].message.content or ""
    # a stop string from the greedy answer itself, past its start: plain ASCII, so no
    # server can see it split across a character
    found = re.search(r"[!-~][ -~]?[!-~]", content[3:])
    if found is None:
        pytest.skip(f"the greedy answer has no plain text to stop at: {content!r}")
    stop = found.group()
    cut = client.chat.completions.create(messages=messages, max_tokens=24, stop=[stop], **args)
    assert cut.choices[0].message.content == content[: content.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_no_field_of_a_reply_is_dropped(peer: Peer) -> None:
    recording = Recording()
    with peer.client(transport=recording) as client:
        chat = client.chat.completions.create(model=peer.model, messages=QUESTION, max_tokens=2)
        completion = client.completions.create(model=peer.model, prompt="Hi", max_tokens=2)
        stream = client.chat.completions.create(
            model=peer.model, messages=QUESTION, max_tokens=2, stream=True
        )
        with stream:
            chunks = list(stream)
    raw = [json.loads(body) for _, body in recording.answers[:2]]
    assert_kept(chat.model_dump(mode="json"), raw[0])
    assert_kept(completion.model_dump(mode="json"), raw[1])
    events = recording.answers[2][1].decode().split("\n\n")
    data = [e.removeprefix("data: ") for e in events if e.startswith("data: {")]
    assert len(data) == len(chunks)
    for chunk, line in zip(chunks, data, strict=True):
        assert_kept(chunk.model_dump(mode="json"), json.loads(line))
