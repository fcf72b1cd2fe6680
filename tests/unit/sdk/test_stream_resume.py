"""Resuming a stream that broke after its first chunks (``sdk._protocol.resume``).

Only reproducible requests (temperature 0, a seed) are resumed; the replay's repeated chunks
must match what was delivered and are skipped; the retry budget, backoff and idempotency key
are the call's own; every response opened is closed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from kit.clients import MESSAGES, Api, TrackedStream, chat_chunk, completion_chunk, sse

import sdk

SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8"}
REPLY = [
    chat_chunk("", delta={"role": "assistant"}),
    chat_chunk("The"),
    chat_chunk(" capital"),
    chat_chunk(" is"),
    chat_chunk(" Paris"),
    chat_chunk(None, finish_reason="stop"),
]
TEXT = "The capital is Paris"
BUSY = b'data: {"error": {"message": "replica died", "type": "server_error", "code": 503}}\n\n'


def served(*bodies: TrackedStream | bytes | int) -> tuple[Any, list[httpx.Request]]:
    """A handler answering successive requests: stream bodies, or a bare status code."""
    seen: list[httpx.Request] = []
    queue = list(bodies)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = queue.pop(0)
        if isinstance(body, int):
            return httpx.Response(body, json={"error": {"message": "unavailable"}})
        stream = body if isinstance(body, TrackedStream) else TrackedStream([body])
        return httpx.Response(200, stream=stream, headers=SSE_HEADERS)

    return handler, seen


def cut(after: int, chunks: list[dict[str, Any]] = REPLY) -> TrackedStream:
    """A body that sends its first ``after`` chunks, then loses the connection."""
    return TrackedStream(
        [sse(*chunks[:after], done=False)], error=httpx.RemoteProtocolError("peer closed")
    )


def replay(id_: str = "chatcmpl-2", chunks: list[dict[str, Any]] = REPLY) -> TrackedStream:
    """The whole reply again, as a second request answers it: new id, same choices."""
    return TrackedStream([sse(*({**c, "id": id_, "created": 8} for c in chunks))])


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def stream(c: Any, **params: Any) -> Any:
    return c.chat.completions.create(model="m", messages=MESSAGES, stream=True, **params)


def greedy(c: Any, **params: Any) -> Any:
    return stream(c, temperature=0, **params)


def test_a_greedy_stream_cut_mid_way_is_resumed_without_repeating_chunks(api: Api) -> None:
    first, second = cut(3), replay()
    handler, seen = served(first, second)
    chunks = api.run(lambda c: api.drain(greedy(c)), api.client(handler))
    assert text_of(chunks) == TEXT and len(chunks) == len(REPLY)
    assert [c.id for c in chunks] == ["chatcmpl-1"] * 3 + ["chatcmpl-2"] * 3
    keys = {r.headers["Idempotency-Key"] for r in seen}
    assert len(seen) == 2 and len(keys) == 1  # one call: one key
    assert [r.headers.get("X-Retry-Count") for r in seen] == ["0", "1"]
    assert json.loads(seen[1].content) == json.loads(seen[0].content)
    assert api.sleeps == [0.5] and first.closed and second.closed


def test_an_error_event_mid_stream_is_resumed_and_the_final_completion_is_whole(
    api: Api,
) -> None:
    broken = TrackedStream([sse(*REPLY[:4], done=False), BUSY])
    handler, seen = served(broken, replay())
    final = api.run(lambda c: api.final(greedy(c)), api.client(handler))
    assert final.choices[0].message.content == TEXT and final.id == "chatcmpl-1"
    assert final.choices[0].finish_reason == "stop" and len(seen) == 2


@pytest.mark.parametrize(
    "params", [{"temperature": 0.7, "seed": 5}, {"extra_body": {"temperature": 0}}]
)
def test_a_seed_or_temperature_0_in_extra_body_makes_a_stream_resumable(
    api: Api, params: dict[str, Any]
) -> None:
    handler, seen = served(cut(2), replay())
    chunks = api.run(lambda c: api.drain(stream(c, **params)), api.client(handler))
    assert text_of(chunks) == TEXT and len(seen) == 2


def test_a_legacy_completion_stream_is_resumed(api: Api) -> None:
    pieces = [completion_chunk(text) for text in ("Once", " upon", " a", " time")]
    handler, seen = served(cut(2, pieces), replay("cmpl-2", pieces))
    chunks = api.run(
        lambda c: api.drain(
            c.completions.create(model="m", prompt="Tell", stream=True, temperature=0)
        ),
        api.client(handler),
    )
    assert "".join(c.choices[0].text for c in chunks) == "Once upon a time" and len(seen) == 2


def _fails_once(api: Api, handler: Any, **kwargs: Any) -> sdk.APIError:
    with pytest.raises(sdk.APIError) as info:
        api.run(lambda c: api.drain(greedy(c, **kwargs)), api.client(handler))
    return info.value


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 1.0},  # sampled: a second request would say something else
        {},  # the server's default is sampling too
        {"temperature": 0, "max_retries": 0},  # no retries left to resume with
    ],
)
def test_streams_that_cannot_be_reproduced_or_retried_are_not_resumed(
    api: Api, params: dict[str, Any]
) -> None:
    first = cut(3)
    handler, seen = served(first, replay())
    with pytest.raises(sdk.APIConnectionError):
        api.run(lambda c: api.drain(stream(c, **params)), api.client(handler))
    assert len(seen) == 1 and first.closed and api.sleeps == []


def test_resume_streams_false_turns_resuming_off(api: Api) -> None:
    handler, seen = served(cut(3), replay())
    policy = sdk.RetryPolicy(jitter=0.0, resume_streams=False)
    with pytest.raises(sdk.APIConnectionError):
        api.run(lambda c: api.drain(greedy(c)), api.client(handler, retry_policy=policy))
    assert len(seen) == 1


def test_an_error_that_is_not_worth_retrying_is_not_resumed(api: Api) -> None:
    refused = b'data: {"error": {"message": "bad grammar", "code": 400}}\n\n'
    handler, seen = served(TrackedStream([sse(*REPLY[:3], done=False), refused]), replay())
    error = _fails_once(api, handler)
    assert isinstance(error, sdk.BadRequestError) and len(seen) == 1


@pytest.mark.parametrize(
    "answer",
    [
        [*REPLY[:2], chat_chunk(" city"), *REPLY[3:]],  # says something else
        REPLY[:2],  # ends before reaching what was delivered
    ],
    ids=["differs", "shorter"],
)
def test_a_replay_that_differs_ends_the_stream_with_the_error_that_broke_it(
    api: Api, answer: list[dict[str, Any]]
) -> None:
    first, second = cut(4), replay(chunks=answer)
    handler, seen = served(first, second)
    received: list[Any] = []

    def sync_body(c: sdk.Client) -> None:
        with greedy(c) as stream:
            received.extend(stream)

    async def async_body(c: sdk.AsyncClient) -> None:
        async with await greedy(c) as stream:
            async for chunk in stream:
                received.append(chunk)

    with pytest.raises(sdk.APIConnectionError) as info:
        api.run(async_body if api.is_async else sync_body, api.client(handler))
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)  # the cut, not the replay
    assert any("replay differed" in note for note in info.value.__notes__)
    assert text_of(received) == "The capital is" and len(seen) == 2
    assert first.closed and second.closed


def test_a_replay_that_breaks_too_is_resumed_again_within_the_budget(api: Api) -> None:
    handler, seen = served(cut(3), 503, cut(5), replay())
    chunks = api.run(lambda c: api.drain(greedy(c, max_retries=3)), api.client(handler))
    assert text_of(chunks) == TEXT and len(chunks) == len(REPLY)
    assert [r.headers.get("X-Retry-Count") for r in seen] == ["0", "1", "2", "3"]
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1


def test_the_budget_counts_the_retries_of_opening_and_of_resuming(api: Api) -> None:
    # one retry to open it, one to resume it: max_retries=2 leaves none for the second cut
    handler, seen = served(503, cut(3), cut(5), replay())
    error = _fails_once(api, handler, max_retries=2)
    assert isinstance(error, sdk.APIConnectionError)
    assert [r.headers.get("X-Retry-Count") for r in seen] == ["0", "1", "2"]


def test_a_retry_policy_rejects_a_resume_streams_that_is_not_a_bool() -> None:
    with pytest.raises(ValueError, match="resume_streams must be True or False"):
        sdk.RetryPolicy(resume_streams="auto")  # type: ignore[arg-type]


def test_cancelling_a_resumed_stream_closes_the_replay() -> None:
    hang = asyncio.Event()
    second = TrackedStream([sse(*REPLY[:4], done=False)], hang=hang)
    handler, seen = served(cut(2), second)

    async def main() -> list[Any]:
        policy = sdk.RetryPolicy(initial_delay=0.0)
        client = sdk.AsyncClient(transport=httpx.MockTransport(handler), retry_policy=policy)
        received: list[Any] = []

        async def consume() -> None:
            async for chunk in await greedy(client):
                received.append(chunk)

        task = asyncio.create_task(consume())
        while len(received) < 4:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return received

    received = asyncio.run(main())
    assert text_of(received) == "The capital is" and len(seen) == 2 and second.closed


def test_hooks_see_a_resume_as_a_retry_and_its_request_like_any_other(api: Api) -> None:
    seen_by_hooks: list[str] = []

    def on_request(request: httpx.Request, call: Any) -> None:
        request.headers["traceparent"] = f"attempt-{call.attempts}"
        seen_by_hooks.append(f"request {call.attempts}")

    def on_retry(failed: httpx.Request, reason: str, call: Any) -> None:
        seen_by_hooks.append(f"retry after {reason}")

    def on_end(call: Any, result: Any, error: BaseException | None) -> None:
        seen_by_hooks.append(f"end {result.choices[0].message.content!r} {error}")

    hooks = sdk.Hooks(on_request=on_request, on_retry=on_retry, on_end=on_end)
    handler, seen = served(cut(3), replay())
    api.run(lambda c: api.drain(greedy(c)), api.client(handler, hooks=hooks))
    assert seen_by_hooks == [
        "request 1",
        "retry after APIConnectionError",
        "request 2",
        f"end {TEXT!r} None",
    ]
    assert [r.headers["traceparent"] for r in seen] == ["attempt-1", "attempt-2"]


def test_hooks_and_a_router_see_one_stream_that_ends_once(api: Api) -> None:
    ends: list[tuple[object, BaseException | None]] = []
    hooks = sdk.Hooks(on_end=lambda call, result, error: ends.append((result, error)))
    handler, seen = served(cut(3), replay())
    router = api.router(handler, ["http://a.test/v1", "http://b.test/v1"], hooks=hooks)
    final = api.run(lambda r: api.final(greedy(r)), router)
    assert final.choices[0].message.content == TEXT and len(seen) == 2
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1
    assert [r.headers.get("X-Retry-Count") for r in seen] == ["0", "1"]
    assert len(ends) == 1 and ends[0][1] is None
    assert [s.outstanding for s in router.endpoint_status()] == [0, 0]


def test_a_router_whose_resume_fails_releases_every_endpoint(api: Api) -> None:
    handler, seen = served(cut(3), 503, 503)
    router = api.router(handler, ["http://a.test/v1", "http://b.test/v1"], max_retries=2)
    with pytest.raises(sdk.InternalServerError):
        api.run(lambda r: api.drain(greedy(r)), router)
    assert len(seen) == 3
    assert [s.outstanding for s in router.endpoint_status()] == [0, 0]


def test_a_router_does_not_resume_a_sampled_stream(api: Api) -> None:
    handler, seen = served(cut(3), replay())
    router = api.router(handler, ["http://a.test/v1"])
    with pytest.raises(sdk.APIConnectionError):
        api.run(lambda r: api.drain(stream(r)), router)
    assert len(seen) == 1 and [s.outstanding for s in router.endpoint_status()] == [0]
