"""Streams: [DONE], error events, truncation, closing, cancelling, accumulation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from kit.clients import MESSAGES, Api, TrackedStream, chat_chunk, completion_chunk, sse

import sdk
from sdk.types import ChatCompletion, ChatCompletionChunk, Completion

SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8"}

HELLO = [
    chat_chunk("", delta={"role": "assistant"}),
    chat_chunk("Hel"),
    chat_chunk("lo"),
    chat_chunk(None, finish_reason="stop"),
]


def serve(*bodies: TrackedStream | bytes, status: int = 200) -> tuple[Any, list[httpx.Request]]:
    """A handler answering successive requests with the given stream bodies."""
    seen: list[httpx.Request] = []
    queue = list(bodies)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = queue.pop(0)
        stream = body if isinstance(body, TrackedStream) else TrackedStream([body])
        return httpx.Response(status, stream=stream, headers=SSE_HEADERS)

    return handler, seen


def chat_stream(c: Any, **kwargs: Any) -> Any:
    return c.chat.completions.create(model="m", messages=MESSAGES, stream=True, **kwargs)


def test_chunks_until_done(api: Api) -> None:
    body = TrackedStream([sse(*HELLO), b"data: never read\n\n"])
    handler, seen = serve(body)
    chunks = api.run(lambda c: api.drain(chat_stream(c)), api.client(handler))
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert [c.choices[0].delta.content for c in chunks] == ["", "Hel", "lo", None]
    assert json.loads(seen[0].content)["stream"] is True
    assert seen[0].headers["Accept"] == "text/event-stream"
    # [DONE] ended the stream: the rest of the body was not read, the response was closed
    assert body.read == 1 and body.closed


def test_text_stream_and_final_completion(api: Api) -> None:
    handler, _ = serve(sse(*HELLO))
    assert api.run(lambda c: api.text(chat_stream(c)), api.client(handler)) == ["Hel", "lo"]
    handler, _ = serve(
        sse(
            *HELLO,
            chat_chunk(
                choices=[],
                usage={
                    "prompt_tokens": 3,
                    "completion_tokens": 2,
                    "total_tokens": 5,
                },
            ),
        )
    )
    final = api.run(lambda c: api.final(chat_stream(c)), api.client(handler))
    assert isinstance(final, ChatCompletion)
    assert final.choices[0].message.content == "Hello"
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.total_tokens == 5
    assert final.response_info is not None and final.response_info.status_code == 200


def test_final_completion_counts_chunks_already_read(api: Api) -> None:
    handler, _ = serve(sse(*HELLO))

    def sync_body(c: sdk.Client) -> ChatCompletion:
        stream: sdk.Stream[ChatCompletionChunk] = chat_stream(c)
        next(stream)
        next(stream)
        return stream.get_final_completion()

    async def async_body(c: sdk.AsyncClient) -> ChatCompletion:
        stream: sdk.AsyncStream[ChatCompletionChunk] = await chat_stream(c)
        await anext(stream)
        await anext(stream)
        return await stream.get_final_completion()

    final = api.run(async_body if api.is_async else sync_body, api.client(handler))
    assert final.choices[0].message.content == "Hello"


def test_n_choices_and_logprobs_are_accumulated_by_index(api: Api) -> None:
    def lp(token: str) -> dict[str, Any]:
        return {
            "content": [
                {
                    "token": token,
                    "logprob": -0.5,
                    "bytes": list(token.encode()),
                    "top_logprobs": [{"token": token, "logprob": -0.5}],
                }
            ]
        }

    chunks = [
        chat_chunk("", index=0, delta={"role": "assistant"}),
        chat_chunk("", index=1, delta={"role": "assistant"}),
        chat_chunk("A", index=1, choice={"logprobs": lp("A")}),
        chat_chunk("x", index=0, choice={"logprobs": lp("x")}),
        chat_chunk("B", index=1, choice={"logprobs": lp("B")}),
        chat_chunk(None, index=1, finish_reason="length"),
        chat_chunk(None, index=0, finish_reason="stop", system_fingerprint="fp"),
    ]
    handler, _ = serve(sse(*chunks))
    final = api.run(lambda c: api.final(chat_stream(c, n=2, logprobs=True)), api.client(handler))
    assert [(ch.index, ch.message.content, ch.finish_reason) for ch in final.choices] == [
        (0, "x", "stop"),
        (1, "AB", "length"),
    ]
    second = final.choices[1].logprobs
    assert second is not None and second.content is not None
    assert [t.token for t in second.content] == ["A", "B"]
    assert final.system_fingerprint == "fp" and (final.id, final.model) == ("chatcmpl-1", "m")


def test_completion_stream(api: Api) -> None:
    piece = completion_chunk

    body = sse(
        piece(
            "Once", logprobs={"tokens": ["Once"], "token_logprobs": [-1.0], "top_logprobs": None}
        ),
        piece(
            " upon", logprobs={"tokens": [" upon"], "token_logprobs": [-2.0], "top_logprobs": None}
        ),
        piece("", finish_reason="length"),
    )
    handler, _ = serve(body, body)
    client = api.client(handler)
    texts = api.run(lambda c: api.text(c.completions.create(prompt="x", stream=True)), client)
    assert texts == ["Once", " upon"]
    final = api.run(lambda c: api.final(c.completions.create(prompt="x", stream=True)), client)
    assert isinstance(final, Completion)
    choice = final.choices[0]
    assert (choice.text, choice.finish_reason) == ("Once upon", "length")
    assert choice.logprobs is not None
    assert (choice.logprobs.tokens, choice.logprobs.token_logprobs) == (
        ["Once", " upon"],
        [-1.0, -2.0],
    )
    assert choice.logprobs.top_logprobs is None


@pytest.mark.parametrize(
    ("event", "error_class", "status"),
    [
        (
            b'data: {"error": {"message": "boom", "type": "server_error"}}\n\n',
            sdk.InternalServerError,
            500,
        ),
        (
            b'data: {"error": {"message": "too long", "type": "BadRequestError", "code": 400}}\n\n',
            sdk.BadRequestError,
            400,
        ),
        (
            # llama.cpp's style: a named error event carrying the error object itself
            b"event: error\n"
            b'data: {"code": 503, "message": "loading", "type": "unavailable_error"}\n\n',
            sdk.InternalServerError,
            503,
        ),
        (
            b'data: {"error": {"message": "slow down", "type": "rate_limit_error"}}\n\n',
            sdk.RateLimitError,
            429,
        ),
    ],
)
def test_error_event_mid_stream_raises_typed_error(
    api: Api, event: bytes, error_class: type[sdk.APIStatusError], status: int
) -> None:
    body = TrackedStream([sse(*HELLO[:2], done=False), event, sse()])
    handler, seen = serve(body)
    received: list[Any] = []

    def sync_body(c: sdk.Client) -> None:
        with chat_stream(c) as stream:
            received.extend(stream)

    async def async_body(c: sdk.AsyncClient) -> None:
        async with await chat_stream(c) as stream:
            async for chunk in stream:
                received.append(chunk)

    with pytest.raises(error_class) as info:
        api.run(async_body if api.is_async else sync_body, api.client(handler))
    assert info.value.status_code == status
    assert len(received) == 2 and len(seen) == 1  # chunks before the error arrived; no retry
    assert body.closed


def test_error_as_first_event_is_retried(api: Api) -> None:
    busy = b'data: {"error": {"message": "busy", "code": 503}}\n\n'
    handler, seen = serve(busy, sse(*HELLO))
    chunks = api.run(lambda c: api.drain(chat_stream(c)), api.client(handler))
    assert len(chunks) == 4 and len(seen) == 2


def test_truncated_stream_raises_connection_error(api: Api) -> None:
    body = TrackedStream([sse(*HELLO, done=False)])
    handler, seen = serve(body)
    with pytest.raises(sdk.APIConnectionError, match="before \\[DONE\\]"):
        api.run(lambda c: api.drain(chat_stream(c)), api.client(handler))
    assert len(seen) == 1 and body.closed


def test_network_error_mid_stream_is_mapped_and_not_retried(api: Api) -> None:
    body = TrackedStream(
        [sse(*HELLO[:2], done=False)], error=httpx.RemoteProtocolError("peer closed")
    )
    handler, seen = serve(body)
    with pytest.raises(sdk.APIConnectionError) as info:
        api.run(lambda c: api.drain(chat_stream(c)), api.client(handler))
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)
    assert len(seen) == 1 and body.closed


def test_failure_before_the_first_event_is_retried(api: Api) -> None:
    dropped = TrackedStream([b": ping\n\n"], error=httpx.ReadError("reset"))
    empty = TrackedStream([])
    handler, seen = serve(dropped, empty, sse(*HELLO))
    chunks = api.run(lambda c: api.drain(chat_stream(c)), api.client(handler))
    assert len(chunks) == 4 and len(seen) == 3
    assert dropped.closed and empty.closed
    assert api.sleeps == [0.5, 1.0]


def test_status_error_on_stream_request_is_retried(api: Api) -> None:
    handler, seen = serve(b'{"error": {"message": "overloaded"}}', status=429)
    with pytest.raises(sdk.RateLimitError):
        api.run(lambda c: api.drain(chat_stream(c, max_retries=0)), api.client(handler))
    assert len(seen) == 1


def test_non_event_stream_answer_is_a_validation_error(api: Api) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>login</html>", headers={"content-type": "text/html"})

    with pytest.raises(sdk.APIResponseValidationError, match="expected an event stream"):
        api.run(lambda c: api.drain(chat_stream(c)), api.client(handler))


@pytest.mark.parametrize(
    "event",
    [b"data: not json\n\n", b'data: {"id": 1}\n\n'],
)
def test_malformed_chunk_is_a_validation_error(api: Api, event: bytes) -> None:
    handler, _ = serve(event)
    with pytest.raises(sdk.APIResponseValidationError):
        api.run(lambda c: api.drain(chat_stream(c)), api.client(handler))


def test_pings_and_named_events_are_skipped(api: Api) -> None:
    body = b": ping\n\nevent: ping\ndata: {}\n\n" + sse(*HELLO)
    handler, _ = serve(body)
    assert len(api.run(lambda c: api.drain(chat_stream(c)), api.client(handler))) == 4


def test_done_only_stream_is_empty(api: Api) -> None:
    handler, _ = serve(sse())
    final = api.run(lambda c: api.final(chat_stream(c)), api.client(handler))
    assert final.choices == [] and final.id == ""


def test_closing_early_closes_the_response(api: Api) -> None:
    body = TrackedStream([sse(*HELLO[:2], done=False), sse(*HELLO[2:])])
    handler, _ = serve(body)

    def sync_body(c: sdk.Client) -> None:
        with chat_stream(c) as stream:
            next(stream)
        assert body.closed
        assert list(stream) == []  # closed streams are exhausted, not broken
        stream.close()  # idempotent

    async def async_body(c: sdk.AsyncClient) -> None:
        async with await chat_stream(c) as stream:
            await anext(stream)
        assert body.closed
        assert [chunk async for chunk in stream] == []
        await stream.close()

    api.run(async_body if api.is_async else sync_body, api.client(handler))
    assert body.read == 1


def test_closing_a_stream_never_iterated(api: Api) -> None:
    body = TrackedStream([sse(*HELLO)])
    handler, _ = serve(body)

    async def async_body(c: sdk.AsyncClient) -> None:
        await (await chat_stream(c)).close()

    api.run(async_body if api.is_async else lambda c: chat_stream(c).close(), api.client(handler))
    assert body.closed


def test_cancelling_the_task_closes_the_response() -> None:
    hang = asyncio.Event()  # never set: the server "keeps generating"
    body = TrackedStream([sse(*HELLO[:2], done=False)], hang=hang)
    handler, _ = serve(body)
    api = Api(is_async=True)
    first_chunk = asyncio.Event()

    async def consume(client: sdk.AsyncClient) -> None:
        stream = await chat_stream(client)
        async for _ in stream:
            first_chunk.set()

    async def main() -> None:
        client = api.client(handler)
        task = asyncio.create_task(consume(client))
        await first_chunk.wait()
        await asyncio.sleep(0)  # let the task block waiting for more bytes
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert body.closed

    asyncio.run(main())


def test_close_from_another_task_ends_the_iteration_quietly() -> None:
    body = TrackedStream([sse(*HELLO[:2], done=False)], hang=asyncio.Event())
    handler, _ = serve(body)
    api = Api(is_async=True)

    async def main() -> None:
        stream = await chat_stream(api.client(handler))
        received: list[ChatCompletionChunk] = []

        async def consume() -> None:
            async for chunk in stream:
                received.append(chunk)

        task = asyncio.create_task(consume())
        while len(received) < 2:
            await asyncio.sleep(0)
        await stream.close()  # the consumer is blocked in a read right now
        await task  # ends without an error
        assert body.closed and len(received) == 2

    asyncio.run(main())


def test_cancelling_while_connecting_closes_what_was_opened() -> None:
    hang = asyncio.Event()
    body = TrackedStream([b": ping\n\n"], hang=hang)  # no event yet: still inside the call
    handler, _ = serve(body)
    api = Api(is_async=True)

    async def main() -> None:
        client = api.client(handler)
        task = asyncio.create_task(chat_stream(client))
        while body.read == 0:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert body.closed

    asyncio.run(main())


# --- streams their owners give up on ------------------------------------------------------


def _watched(outcome: str) -> tuple[TrackedStream, bool]:
    """A task reads one chunk without ``async with``, then ends as ``outcome`` while its
    stream is still referenced (by the test, as a kept task's traceback would)."""
    body = TrackedStream([sse(*HELLO[:2], done=False)], hang=asyncio.Event())
    handler, _ = serve(body)
    api = Api(is_async=True)
    kept: list[Any] = []

    async def handler_task(client: sdk.AsyncClient) -> None:
        stream = await chat_stream(client)
        kept.append(stream)
        async for _ in stream:
            if outcome == "fails":
                raise RuntimeError("the handler broke")
            if outcome == "returns":
                return
            await asyncio.sleep(3600)  # cancelled here, awaiting something else

    async def main() -> bool:
        task = asyncio.create_task(handler_task(api.client(handler)))
        while body.read == 0:
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        if outcome == "cancelled":
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for _ in range(3):  # the close is scheduled from the task's done callback
            await asyncio.sleep(0)
        closed = body.closed
        if outcome == "returns":  # handed on: another task can read the rest
            second = [c async for c in _first_n(kept[0], 1)]
            assert len(second) == 1
        return closed

    return body, asyncio.run(main())


async def _first_n(stream: Any, n: int) -> Any:
    async for chunk in stream:
        yield chunk
        n -= 1
        if n == 0:
            return


@pytest.mark.parametrize("outcome", ["cancelled", "fails"])
def test_a_task_that_gives_up_closes_its_stream(outcome: str) -> None:
    _, closed = _watched(outcome)
    assert closed


def test_a_task_that_returns_may_hand_its_stream_on() -> None:
    _, closed = _watched("returns")
    assert not closed


def test_a_dropped_sync_stream_closes_at_once() -> None:
    body = TrackedStream([sse(*HELLO[:2], done=False), b"data: more\n\n"])
    handler, _ = serve(body)
    client = Api(is_async=False).client(handler)
    stream = chat_stream(client)
    next(stream)
    del stream  # no close(), no garbage collection: dropping the last reference is enough
    assert body.closed
