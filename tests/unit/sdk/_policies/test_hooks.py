"""Plain hooks (``sdk.Hooks``): every request, response, retry and the end of each call."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from kit.clients import Api, chat_chunk, completion_body, sse
from kit.replicas import Replicas

import sdk
from sdk import CallInfo, Hooks

M = [{"role": "user", "content": "Hi"}]


class Log:
    """Records what the hooks saw, as short strings."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.calls: list[CallInfo] = []
        self.ends: list[tuple[Any, BaseException | None]] = []

    def hooks(self) -> Hooks:
        return Hooks(
            on_request=self.request,
            on_response=self.response,
            on_retry=self.retry,
            on_end=self.end,
        )

    def request(self, request: httpx.Request, call: CallInfo) -> None:
        self.calls.append(call)
        request.headers["x-app"] = "mine"  # a hook may add headers
        self.events.append(f"request {request.url.host} {call.attempts}")

    def response(self, response: httpx.Response, call: CallInfo) -> None:
        self.events.append(f"response {response.status_code}")

    def retry(self, failed: httpx.Request, reason: str, call: CallInfo) -> None:
        self.events.append(f"retry {failed.url.host} {reason}")

    def end(self, call: CallInfo, result: object, error: BaseException | None) -> None:
        self.events.append(f"end {type(error).__name__ if error else 'ok'}")
        self.ends.append((result, error))


def test_hooks_see_each_attempt_and_the_end(api: Api) -> None:
    log = Log()
    answers = [httpx.Response(503), httpx.Response(200, json=completion_body("fine"))]
    client = api.client(lambda request: answers.pop(0), hooks=log.hooks(), max_retries=1)
    reply = api.run(
        lambda c: c.chat.completions.create(model="m", messages=M, max_tokens=3), client
    )
    assert log.events == [
        "request 127.0.0.1 1",
        "response 503",
        "retry 127.0.0.1 InternalServerError",
        "request 127.0.0.1 2",
        "response 200",
        "end ok",
    ]
    call = log.calls[0]
    assert (call.operation, call.model, call.stream, call.params["max_tokens"]) == (
        "chat",
        "m",
        False,
        3,
    )
    assert log.ends == [(reply, None)]


def test_a_stream_ends_for_the_hooks_when_it_ends(api: Api) -> None:
    log = Log()
    body = sse(chat_chunk("a"), chat_chunk("b", finish_reason="stop"))
    client = api.client(
        lambda request: httpx.Response(
            200, content=body, headers={"content-type": "text/event-stream"}
        ),
        hooks=log.hooks(),
    )
    api.run(
        lambda c: api.drain(c.chat.completions.create(model="m", messages=M, stream=True)), client
    )
    assert log.events[-1] == "end ok"
    result, _ = log.ends[0]
    assert result.choices[0].message.content == "ab"  # what the stream delivered, put together


def test_a_stream_closed_unread_ends_too(api: Api) -> None:
    log = Log()
    body = sse(chat_chunk("a"), chat_chunk("b"))
    client = api.client(
        lambda request: httpx.Response(
            200, content=body, headers={"content-type": "text/event-stream"}
        ),
        hooks=log.hooks(),
    )
    api.keep_loop()
    stream = api.run(
        lambda c: c.chat.completions.create(model="m", messages=M, stream=True), client
    )
    assert log.events[-1] == "response 200"
    api.run(lambda c: stream.close(), client)
    api.run(lambda c: stream.close(), client)
    assert log.events[-1] == "end ok" and len(log.ends) == 1


def test_a_dropped_stream_ends_for_the_hooks() -> None:
    log = Log()
    body = sse(chat_chunk("a"), chat_chunk("b"))
    client = sdk.Client(
        transport=httpx.MockTransport(
            lambda request: httpx.Response(
                200, content=body, headers={"content-type": "text/event-stream"}
            )
        ),
        hooks=log.hooks(),
    )
    stream = client.chat.completions.create(model="m", messages=M, stream=True)
    del stream
    assert log.events[-1] == "end ok"


def test_a_failed_call_ends_with_its_error(api: Api) -> None:
    log = Log()
    reps = Replicas(["a"])
    reps["a"].down = True
    client = api.client(reps, base_url=reps["a"].url, hooks=log.hooks(), max_retries=1)
    with pytest.raises(sdk.APIConnectionError):
        api.run(lambda c: c.models.list(), client)
    assert log.events == [
        "request a.test 1",
        "retry a.test APIConnectionError",
        "request a.test 2",
        "end APIConnectionError",
    ]
    assert log.calls[0].operation is None and log.calls[0].path == "/models"


def test_a_failing_hook_is_logged_and_changes_nothing(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("hook bug")

    class Refusing:
        def start_call(self, call: CallInfo) -> None:
            raise RuntimeError("cannot start")

    class Ignoring:
        def start_call(self, call: CallInfo) -> None:
            return None

    hooks = [Hooks(on_request=broken, on_end=broken), Refusing(), Ignoring()]
    client = api.client(lambda r: httpx.Response(200, json=completion_body("ok")), hooks=hooks)
    with caplog.at_level(logging.ERROR, logger="sdk"):
        reply = api.run(lambda c: c.chat.completions.create(model="m", messages=M), client)
    assert reply.choices[0].message.content == "ok"
    messages = [record.getMessage() for record in caplog.records]
    assert any("a hook failed in request" in m for m in messages)
    assert any("failed to start observing" in m for m in messages)


def test_hooks_are_set_and_replaced_like_other_settings(api: Api) -> None:
    first, second = Log(), Log()
    client = api.client(lambda r: httpx.Response(200, json={"data": []}), hooks=first.hooks())
    api.run(lambda c: c.with_options(hooks=[second.hooks()]).models.list(), client)
    api.run(lambda c: c.with_options(hooks=None).models.list(), client)
    assert first.events == [] and len(second.events) == 3
    with pytest.raises(TypeError, match="hooks must be"):
        api.client(lambda r: httpx.Response(200), hooks=[print])


def test_a_hook_can_see_the_headers_it_added(api: Api) -> None:
    seen: list[str] = []
    log = Log()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["x-app"])
        return httpx.Response(200, json=completion_body())

    client = api.client(handler, hooks=log.hooks())
    api.run(lambda c: c.chat.completions.create(model="m", messages=M), client)
    assert seen == ["mine"]
