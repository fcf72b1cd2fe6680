"""The official ``openai`` package (sync and async) against a real server on the tiny model.

The tiny model has random weights, so its text is noise; what is checked is the contract:
shapes, streaming vs non-streaming agreement, stop strings, usage, logprobs, seeds, errors.
``ignore_eos`` (a server extension, sent as ``extra_body``) keeps lengths exact where a test
counts tokens.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from kit.live_clients import OpenAICalls, outcome, request_args
from kit.tinybert import NAME as TINY_EMBEDDING

KINDS = ("chat", "completion")
PROMPT = "The quick brown fox jumps over the lazy dog"
NO_EOS = {"ignore_eos": True}


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def run(api: OpenAICalls, kind: str, model: str, **kwargs: Any) -> Any:
    prompt = kwargs.pop("prompt", PROMPT)
    return await api.create(kind, **request_args(kind, model, prompt, **kwargs))


async def test_models_list(api: OpenAICalls, model_id: str) -> None:
    assert await api.list_models() == [model_id, TINY_EMBEDDING]


async def test_stream_equals_non_stream(api: OpenAICalls, kind: str, model_id: str) -> None:
    args = {"max_tokens": 12, "temperature": 0}
    whole = outcome(kind, await run(api, kind, model_id, **args))
    streamed = outcome(kind, await run(api, kind, model_id, stream=True, **args))
    assert whole.texts[0], "the tiny model produced no text at all"
    assert streamed.texts == whole.texts
    assert streamed.finish_reasons == whole.finish_reasons
    assert streamed.usage is None  # not asked for
    if kind == "chat":
        first = streamed.chunks[0].choices[0]
        assert first.delta.role == "assistant"
        assert all(c.choices[0].delta.role is None for c in streamed.chunks[1:])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_max_tokens_gives_length(
    api: OpenAICalls, kind: str, model_id: str, stream: bool
) -> None:
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if stream else {}
    result = await run(api, kind, model_id, max_tokens=7, stream=stream, extra_body=NO_EOS, **extra)
    got = outcome(kind, result)
    assert got.finish_reasons == {0: "length"}
    assert got.usage.completion_tokens == 7
    assert got.usage.total_tokens == got.usage.prompt_tokens + 7


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_completions_default_to_16_tokens(
    api: OpenAICalls, model_id: str, stream: bool
) -> None:
    # OpenAI's and vLLM's /v1/completions default; chat keeps "what the context leaves"
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if stream else {}
    result = await api.create(
        "completion", model=model_id, prompt="Once upon a time", stream=stream,
        extra_body=NO_EOS, **extra,
    )  # fmt: skip
    got = outcome("completion", result)
    assert got.usage.completion_tokens == 16 and got.finish_reasons == {0: "length"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_n_choices(api: OpenAICalls, kind: str, model_id: str, stream: bool) -> None:
    args = {"n": 2, "max_tokens": 8, "temperature": 1.0, "seed": 11, "extra_body": NO_EOS}
    got = outcome(kind, await run(api, kind, model_id, stream=stream, **args))
    assert sorted(got.texts) == [0, 1]
    assert got.finish_reasons == {0: "length", 1: "length"}
    # choice i is seeded with seed + i: the two differ, and a repeat reproduces both
    assert got.texts[0] != got.texts[1]
    again = outcome(kind, await run(api, kind, model_id, stream=not stream, **args))
    assert again.texts == got.texts


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_stop_sequence(api: OpenAICalls, kind: str, model_id: str, stream: bool) -> None:
    args = {"max_tokens": 24, "temperature": 0, "extra_body": NO_EOS}
    full = outcome(kind, await run(api, kind, model_id, **args)).texts[0]
    # a stop string from the middle of the greedy text, made of whole characters
    start = next(
        i
        for i in range(4, len(full) - 2)
        if "\ufffd" not in full[i : i + 2] and full.find(full[i : i + 2]) == i
    )
    stop = full[start : start + 2]
    got = outcome(kind, await run(api, kind, model_id, stop=[stop], stream=stream, **args))
    assert got.texts[0] == full[:start]
    assert got.finish_reasons == {0: "stop"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_unmatched_stop_prefix_is_released_at_the_end(
    api: OpenAICalls, kind: str, model_id: str, stream: bool
) -> None:
    args = {"max_tokens": 10, "temperature": 0, "extra_body": NO_EOS}
    full = outcome(kind, await run(api, kind, model_id, **args)).texts[0]
    # the text ends with the first character of a stop string that never completes: the
    # server holds that character back while it might, and must release it at "length"
    stop = full[-1] + "\u00a7\u00a7"
    assert stop not in full
    got = outcome(kind, await run(api, kind, model_id, stop=stop, stream=stream, **args))
    assert got.texts[0] == full
    assert got.finish_reasons == {0: "length"}


async def test_include_usage_only_when_asked(api: OpenAICalls, kind: str, model_id: str) -> None:
    args = {"max_tokens": 5, "temperature": 0, "stream": True, "extra_body": NO_EOS}
    chunks = await run(api, kind, model_id, stream_options={"include_usage": True}, **args)
    *body, last = chunks
    assert last.choices == []
    assert last.usage.completion_tokens == 5
    assert last.usage.total_tokens == last.usage.prompt_tokens + 5
    assert all(c.choices and c.usage is None for c in body)

    plain = await run(api, kind, model_id, **args)
    assert all(c.choices and c.usage is None for c in plain)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_chat_logprobs(api: OpenAICalls, model_id: str, stream: bool) -> None:
    args = request_args(
        "chat", model_id, PROMPT, max_tokens=10, temperature=0, logprobs=True, top_logprobs=3
    )
    result = await api.create("chat", stream=stream, extra_body=NO_EOS, **args)
    if stream:
        entries = [
            t for c in result for ch in c.choices if ch.logprobs for t in ch.logprobs.content
        ]
    else:
        entries = result.choices[0].logprobs.content
    text = outcome("chat", result).texts[0]
    assert len(entries) == 10
    for entry in entries:
        assert len(entry.top_logprobs) == 3
        best = entry.top_logprobs[0]
        # greedy: the chosen token is the most likely one
        assert (entry.token, entry.logprob) == (best.token, best.logprob)
        assert entry.logprob <= 0.0
        assert [t.logprob for t in entry.top_logprobs] == sorted(
            (t.logprob for t in entry.top_logprobs), reverse=True
        )
    joined = b"".join(bytes(entry.bytes or []) for entry in entries)
    assert joined.decode("utf-8", errors="replace") == text


async def test_completion_logprobs(api: OpenAICalls, model_id: str) -> None:
    args = request_args("completion", model_id, PROMPT, max_tokens=10, temperature=0)
    result = await api.create("completion", logprobs=2, extra_body=NO_EOS, **args)
    lp = result.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 10
    assert result.usage.completion_tokens == 10
    for token_logprob, top in zip(lp.token_logprobs, lp.top_logprobs, strict=True):
        assert 1 <= len(top) <= 2  # distinct tokens may share a text (dict keys)
        assert token_logprob == max(top.values())  # greedy


async def test_top_seed_wraps_for_the_second_choice(
    api: OpenAICalls, kind: str, model_id: str
) -> None:
    args = {"max_tokens": 8, "temperature": 1.0, "extra_body": NO_EOS}
    top = outcome(kind, await run(api, kind, model_id, seed=2**64 - 1, n=2, **args)).texts
    zero = outcome(kind, await run(api, kind, model_id, seed=0, **args)).texts
    assert top[1] == zero[0]  # seed + 1 wrapped around to 0


async def test_seed_reproduces_sampling(api: OpenAICalls, kind: str, model_id: str) -> None:
    args = {"max_tokens": 16, "temperature": 1.0, "extra_body": NO_EOS}
    first = outcome(kind, await run(api, kind, model_id, seed=1234, **args)).texts
    second = outcome(kind, await run(api, kind, model_id, seed=1234, **args)).texts
    other = outcome(kind, await run(api, kind, model_id, seed=4321, **args)).texts
    assert first == second
    assert first != other  # the seed is really used


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_context_overflow_is_bad_request(
    api: OpenAICalls, kind: str, model_id: str, stream: bool
) -> None:
    # a stream that cannot start is an ordinary 400, not a 200 with an error event
    with pytest.raises(openai.BadRequestError) as info:
        await run(api, kind, model_id, prompt="tick tock " * 600, max_tokens=4, stream=stream)
    assert info.value.status_code == 400
    assert info.value.code == "context_length_exceeded"

    with pytest.raises(openai.BadRequestError) as info:
        await run(api, kind, model_id, max_tokens=100_000, stream=stream)
    assert info.value.code == "context_length_exceeded"


async def test_unknown_model_is_not_found(api: OpenAICalls, kind: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await run(api, kind, "no-such-model", max_tokens=4)
    assert info.value.code == "model_not_found"


async def test_batched_prompts_equal_single_requests(api: OpenAICalls, model_id: str) -> None:
    # prompt p's choice i has index p * n + i, and is seeded like choice i of a lone request
    args = {"max_tokens": 6, "temperature": 1.0, "seed": 5, "n": 2, "extra_body": NO_EOS}
    batch = await api.create("completion", model=model_id, prompt=["first", "second"], **args)
    assert sorted(c.index for c in batch.choices) == [0, 1, 2, 3]
    texts = {c.index: c.text for c in batch.choices}
    for p, prompt in enumerate(["first", "second"]):
        alone = await api.create("completion", model=model_id, prompt=prompt, **args)
        assert {c.index: c.text for c in alone.choices} == {0: texts[2 * p], 1: texts[2 * p + 1]}
    assert batch.usage.completion_tokens == 4 * 6


async def test_default_max_tokens_fills_the_context_exactly(
    http: httpx.AsyncClient, model_id: str
) -> None:
    messages = [{"role": "user", "content": PROMPT}]
    counted = (await http.post("/tokenize", json={"messages": messages})).json()
    room = counted["max_model_len"] - counted["count"]
    body = {"model": model_id, "messages": messages, "temperature": 0, "ignore_eos": True}
    r = await http.post("/v1/chat/completions", json=body)  # no max_tokens: all that is left
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert r.json()["usage"] == {
        "prompt_tokens": counted["count"],
        "completion_tokens": room,
        "total_tokens": counted["max_model_len"],
    }
    # the same budget asked for explicitly is accepted; one more token is not
    r = await http.post("/v1/chat/completions", json={**body, "max_tokens": room, "stream": True})
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    r = await http.post("/v1/chat/completions", json={**body, "max_tokens": room + 1})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"


async def test_logit_bias_forces_a_token(
    api: OpenAICalls, http: httpx.AsyncClient, model_id: str
) -> None:
    [token] = (await http.post("/tokenize", json={"prompt": "Q"})).json()["tokens"]
    result = await api.create(
        "completion",
        model=model_id,
        prompt=PROMPT,
        max_tokens=5,
        temperature=1.0,
        logit_bias={str(token): 100},
        extra_body=NO_EOS,
    )
    assert result.choices[0].text == "QQQQQ"


async def test_penalties_change_greedy_text(api: OpenAICalls, kind: str, model_id: str) -> None:
    # the tiny model's greedy text repeats itself ("989898..."): penalties must break that
    args = {"max_tokens": 40, "temperature": 0, "extra_body": NO_EOS}
    plain = outcome(kind, await run(api, kind, model_id, **args)).texts[0]
    for penalty in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}):
        got = outcome(kind, await run(api, kind, model_id, **penalty, **args))
        assert got.finish_reasons == {0: "length"}
        assert got.texts[0] != plain


async def test_echo_prepends_the_prompt(api: OpenAICalls, model_id: str) -> None:
    args = {"model": model_id, "prompt": PROMPT, "max_tokens": 4, "temperature": 0}
    plain = await api.create("completion", **args, extra_body=NO_EOS)
    echoed = await api.create("completion", **args, echo=True, extra_body=NO_EOS)
    assert echoed.choices[0].text == PROMPT + plain.choices[0].text
    chunks = await api.create("completion", **args, echo=True, stream=True, extra_body=NO_EOS)
    assert outcome("completion", chunks).texts[0] == echoed.choices[0].text
