"""The sans-I/O core on its own: no transport, no event loop, objects in and out."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from kit.clients import chat_chunk, completion_body, sse

import sdk
from sdk._protocol.accumulate import ChatCompletionAccumulator
from sdk._protocol.actions import Action, Flow, ReadBody, ReadChunk, Send, Sent, Sleep
from sdk._protocol.flow import call_flow, make_status_error, stream_flow
from sdk._protocol.options import DEFAULT_BASE_URL, make_config, split_options
from sdk._protocol.request import chat_completion_call, chat_completion_stream_call, model_list_call
from sdk._protocol.retry import backoff_delay, parse_retry_after, retry_delay, should_retry
from sdk._protocol.stream import ChunkDecoder, stream_error
from sdk.types import ChatCompletion, ChatCompletionChunk

CONFIG = make_config({"api_key": "k", "retry_policy": sdk.RetryPolicy(jitter=0.0)}, env={})


def drive(flow: Flow[Any], replies: list[Any]) -> tuple[Any, list[Action]]:
    """Run a flow by hand: each action gets the next reply (an exception is thrown in)."""
    actions: list[Action] = []
    reply: Any = None
    while True:
        try:
            action = flow.throw(reply) if isinstance(reply, Exception) else flow.send(reply)
        except StopIteration as stop:
            return stop.value, actions
        actions.append(action)
        reply = replies.pop(0) if isinstance(action, Send | ReadBody | ReadChunk) else None


def response(status: int, request: httpx.Request, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, request=request, **kwargs)


def test_call_flow_by_hand_with_a_retry() -> None:
    call, options = chat_completion_call({"messages": [{"role": "user", "content": "Hi"}]})
    flow = call_flow(CONFIG, call, options, clock=lambda: 0.0)
    request = httpx.Request("POST", "http://x")
    busy = response(503, request, headers={"retry-after": "2"})
    done = response(200, request)
    body = httpx.Response(200, json=completion_body()).read()
    result, actions = drive(flow, [Sent(busy, None), b"{}", Sent(done, None), body])
    assert isinstance(result, ChatCompletion) and result.response_info is not None
    assert result.response_info.retries_taken == 1
    kinds = [type(a).__name__ for a in actions]
    assert kinds == ["Send", "ReadBody", "Close", "Sleep", "Send", "ReadBody"]
    assert actions[3] == Sleep(2.0)
    sends = [a for a in actions if isinstance(a, Send)]
    assert [s.request.headers["X-Retry-Count"] for s in sends] == ["0", "1"]


def test_stream_flow_by_hand() -> None:
    call, options = chat_completion_stream_call({"messages": []})
    flow = stream_flow(CONFIG, call, options)
    ok = response(200, httpx.Request("POST", "http://x"))  # no content type: accepted
    start, actions = drive(flow, [Sent(ok, "it"), b": ping\n\n", sse(chat_chunk("a"), done=False)])
    assert [type(c) for c in start.first] == [ChatCompletionChunk]
    assert actions[1] == ReadChunk(ok, "it")
    assert not start.decoder.done


def test_a_call_that_does_not_stream_cannot_open_a_stream() -> None:
    call, options = chat_completion_call({"messages": []})
    with pytest.raises(TypeError, match="is not a streaming call"):
        next(stream_flow(CONFIG, call, options))


def test_connection_error_thrown_into_the_flow_is_retried() -> None:
    call, options = model_list_call({})
    flow = call_flow(CONFIG, call, options)
    failure = sdk.APIConnectionError("refused")
    ok = response(200, httpx.Request("GET", "http://x"))
    result, actions = drive(flow, [failure, Sent(ok, None), b'{"data": []}'])
    assert result.data == []
    assert [type(a).__name__ for a in actions] == ["Send", "Sleep", "Send", "ReadBody"]
    first = actions[0]
    assert isinstance(first, Send) and "Idempotency-Key" not in first.request.headers


# --- options ---------------------------------------------------------------------------------


def test_make_config_precedence() -> None:
    env = {"LLM_SDK_BASE_URL": "http://env:1/v1", "LLM_SDK_API_KEY": "env"}
    assert str(make_config({}, env).base_url) == "http://env:1/v1"
    assert make_config({}, env).api_key == "env"
    explicit = make_config({"base_url": "http://arg:2/v1/", "api_key": "arg"}, env)
    assert (str(explicit.base_url), explicit.api_key) == ("http://arg:2/v1", "arg")
    assert str(make_config({}, {}).base_url) == DEFAULT_BASE_URL
    assert make_config({"max_retries": 7}, {}).retry.max_retries == 7
    assert "k" not in repr(CONFIG)


@pytest.mark.parametrize(
    ("base_url", "root"),
    [("http://h/v1", "http://h/"), ("http://h", "http://h/"), ("http://h/a/v1/", "http://h/a")],
)
def test_root_url(base_url: str, root: str) -> None:
    assert str(make_config({"base_url": base_url}, {}).root_url) == root


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"initial_delay": -1.0},
        {"max_delay": float("inf")},
        {"max_retry_after": "1"},
        {"jitter": 1.5},
    ],
)
def test_retry_policy_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        sdk.RetryPolicy(**kwargs)


def test_split_options() -> None:
    params, options = split_options({"model": "m", "timeout": 1.0, "extra_body": {}})
    assert params == {"model": "m"}
    assert options == {"timeout": 1.0, "extra_body": {}}


# --- retry decisions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "5"}, 5.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "x", "retry-after": "3"}, 3.0),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "Thu, 01 Jan 1970 00:01:40 GMT"}, 60.0),  # now = 40
        ({"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"}, 0.0),
        ({"retry-after": "tomorrow"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=40.0) == expected


def status_error(
    code: int, retry_after: float | None = None, headers: dict[str, str] | None = None
) -> sdk.APIStatusError:
    resp = httpx.Response(code, headers=headers, request=httpx.Request("GET", "http://x"))
    return sdk.APIStatusError("e", response=resp, status_code=code, retry_after=retry_after)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (status_error(500), True),
        (status_error(404), False),
        (status_error(500, headers={"x-should-retry": "false"}), False),
        (status_error(400, headers={"x-should-retry": "true"}), True),
        (status_error(429, retry_after=61.0), False),
        (status_error(429, retry_after=61.0, headers={"x-should-retry": "true"}), False),
        (status_error(429, retry_after=60.0), True),
        (sdk.APITimeoutError("t"), True),
        (sdk.APIResponseValidationError("v", response=status_error(200).response), False),
        (ValueError("bug"), False),
    ],
)
def test_should_retry(error: BaseException, expected: bool) -> None:
    assert should_retry(error, sdk.RetryPolicy()) is expected


def test_backoff_delay() -> None:
    policy = sdk.RetryPolicy()
    assert [backoff_delay(n, policy, rand=0.0) for n in range(6)] == [0.5, 1, 2, 4, 8, 8]
    assert backoff_delay(0, policy, rand=0.999) > 0.375
    assert backoff_delay(10**9, policy, rand=0.0) == 8.0  # no OverflowError
    assert retry_delay(status_error(429, retry_after=3.0), 5, policy, 0.0) == 3.0


# --- stream events ---------------------------------------------------------------------------


def decoder() -> ChunkDecoder[ChatCompletionChunk]:
    ok = response(200, httpx.Request("POST", "http://x"))
    return ChunkDecoder(ChatCompletionChunk.model_validate, ok)


def test_events_after_done_in_the_same_bytes_are_ignored() -> None:
    d = decoder()
    chunks = d.feed(sse(chat_chunk("a")) + sse(chat_chunk("b")))
    assert [c.choices[0].delta.content for c in chunks] == ["a"]
    assert d.done
    d.finish()  # fine after [DONE]


@pytest.mark.parametrize("then", ["feed", "finish"])
def test_chunks_before_an_error_event_in_the_same_bytes_are_kept(then: str) -> None:
    d = decoder()
    error = {"error": {"message": "engine failed", "code": 500}}
    chunks = d.feed(sse(chat_chunk("a"), error, done=False))
    assert [c.choices[0].delta.content for c in chunks] == ["a"]
    with pytest.raises(sdk.InternalServerError, match="engine failed"):
        d.feed(b"data: [DONE]\n\n") if then == "feed" else d.finish()


@pytest.mark.parametrize(
    ("payload", "error_class", "status"),
    [
        ({"error": {"message": "m", "code": 404}}, sdk.NotFoundError, 404),
        ({"error": {"message": "m", "code": 200}}, sdk.InternalServerError, 500),
        (
            {
                "error": {
                    "message": "m",
                    "code": "context_length_exceeded",
                    "type": "invalid_request_error",
                }
            },
            sdk.BadRequestError,
            400,
        ),
        ({"error": "plain text"}, sdk.InternalServerError, 500),
        ({"message": "flat", "type": "overloaded"}, sdk.RateLimitError, 429),
        (["odd"], sdk.InternalServerError, 500),
    ],
)
def test_stream_error_classification(
    payload: object, error_class: type[sdk.APIStatusError], status: int
) -> None:
    error = stream_error(payload, response(200, httpx.Request("POST", "http://x")))
    assert type(error) is error_class and error.status_code == status
    assert "sent inside the stream" in str(error)


def test_status_error_message_fallbacks() -> None:
    resp = response(500, httpx.Request("GET", "http://x"))
    assert str(make_status_error(resp, b'{"error": {}}', 0.0)) == 'Error code: 500 - {"error": {}}'
    assert str(make_status_error(resp, b"  ", 0.0)) == "Error code: 500 - Internal Server Error"


# --- accumulation ----------------------------------------------------------------------------


def test_chat_accumulator_refusal_and_role_default() -> None:
    acc = ChatCompletionAccumulator()
    refusal_lp = {"refusal": [{"token": "No", "logprob": -0.1}]}
    acc.add(
        ChatCompletionChunk.model_validate(
            chat_chunk(delta={"refusal": "No"}, choice={"logprobs": refusal_lp})
        )
    )
    acc.add(ChatCompletionChunk.model_validate(chat_chunk(delta={"refusal": "pe"})))
    choice = acc.result().choices[0]
    assert (choice.message.role, choice.message.content, choice.message.refusal) == (
        "assistant",
        None,
        "Nope",
    )
    assert choice.logprobs is not None and choice.logprobs.content is None
    assert acc.text(ChatCompletionChunk.model_validate(chat_chunk("x", index=1))) is None
