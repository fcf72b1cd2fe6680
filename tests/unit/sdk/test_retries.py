"""Retry rules, each run against the sync and the async client (``api`` fixture)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from kit.clients import MESSAGES, Api, TrackedStream, completion_body

import sdk


def scripted(
    *replies: httpx.Response | Exception,
) -> tuple[Callable[..., httpx.Response], list[httpx.Request]]:
    """A handler answering with ``replies`` in order (exceptions are raised); records requests."""
    seen: list[httpx.Request] = []
    queue = list(replies)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        reply = queue.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return handler, seen


def ok() -> httpx.Response:
    return httpx.Response(200, json=completion_body())


def status(code: int, **headers: str) -> httpx.Response:
    return httpx.Response(code, json={"error": {"message": f"status {code}"}}, headers=headers)


def chat(c: sdk.Client | sdk.AsyncClient) -> object:
    return c.chat.completions.create(model="m", messages=MESSAGES)


@pytest.mark.parametrize("code", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_status_is_retried(api: Api, code: int) -> None:
    handler, seen = scripted(status(code), ok())
    result = api.run(chat, api.client(handler))
    assert result.choices[0].message.content == "hi"
    assert len(seen) == 2
    assert api.sleeps == [0.5]
    assert result.response_info.retries_taken == 1


@pytest.mark.parametrize("code", [400, 401, 403, 404, 413, 422])
def test_client_errors_are_not_retried(api: Api, code: int) -> None:
    handler, seen = scripted(status(code))
    with pytest.raises(sdk.APIStatusError) as info:
        api.run(chat, api.client(handler))
    assert info.value.status_code == code
    assert len(seen) == 1
    assert api.sleeps == []


def test_gives_up_after_max_retries_with_exponential_backoff(api: Api) -> None:
    handler, seen = scripted(*[status(503)] * 7)
    policy = sdk.RetryPolicy(max_retries=6, initial_delay=0.5, max_delay=3.0, jitter=0.0)
    with pytest.raises(sdk.InternalServerError):
        api.run(chat, api.client(handler, retry_policy=policy))
    assert len(seen) == 7
    assert api.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_default_policy_two_retries_with_jitter(api: Api) -> None:
    handler, seen = scripted(status(500), status(500), status(500))
    with pytest.raises(sdk.InternalServerError):
        api.run(chat, api.client(handler, retry_policy=sdk.RetryPolicy()))
    assert len(seen) == 3
    first, second = api.sleeps
    assert 0.375 <= first <= 0.5 and 0.75 <= second <= 1.0


def test_max_retries_argument_and_per_call_override(api: Api) -> None:
    handler, seen = scripted(status(500), status(500), status(500), status(500))
    client = api.client(handler, max_retries=1)
    with pytest.raises(sdk.InternalServerError):
        api.run(chat, client)
    assert len(seen) == 2
    with pytest.raises(sdk.InternalServerError):
        api.run(lambda c: c.chat.completions.create(messages=MESSAGES, max_retries=0), client)
    assert len(seen) == 3


@pytest.mark.parametrize(
    ("headers", "expected_sleep"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),  # the precise one wins
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past
        ({"retry-after": "soon"}, 0.5),  # unparseable: normal backoff
    ],
)
def test_retry_after_is_honoured(api: Api, headers: dict[str, str], expected_sleep: float) -> None:
    handler, _ = scripted(status(429, **headers), ok())
    api.run(chat, api.client(handler))
    assert api.sleeps == [expected_sleep]


def test_retry_after_http_date_in_the_future(api: Api) -> None:
    later = format_datetime(datetime.fromtimestamp(4_000_000_000, tz=UTC), usegmt=True)
    handler, seen = scripted(status(503, **{"retry-after": later}), ok())
    with pytest.raises(sdk.InternalServerError) as info:
        api.run(chat, api.client(handler))
    # far beyond the cap: not retried, and the error says how long the server wanted
    assert len(seen) == 1
    assert info.value.retry_after is not None and info.value.retry_after > 60


def test_retry_after_above_cap_is_not_retried(api: Api) -> None:
    handler, seen = scripted(status(429, **{"retry-after": "120"}), ok())
    with pytest.raises(sdk.RateLimitError) as info:
        api.run(chat, api.client(handler))
    assert len(seen) == 1
    assert info.value.retry_after == 120.0
    assert api.sleeps == []


def test_retry_after_cap_is_configurable(api: Api) -> None:
    handler, _ = scripted(status(429, **{"retry-after": "120"}), ok())
    policy = sdk.RetryPolicy(max_retry_after=300.0, jitter=0.0)
    api.run(chat, api.client(handler, retry_policy=policy))
    assert api.sleeps == [120.0]


def test_x_should_retry_false_wins_over_status(api: Api) -> None:
    handler, seen = scripted(status(503, **{"x-should-retry": "false"}), ok())
    with pytest.raises(sdk.InternalServerError):
        api.run(chat, api.client(handler))
    assert len(seen) == 1


def test_x_should_retry_true_retries_any_status(api: Api) -> None:
    handler, seen = scripted(status(400, **{"x-should-retry": "true"}), ok())
    api.run(chat, api.client(handler))
    assert len(seen) == 2


def test_idempotency_key_is_stable_across_retries_and_new_per_call(api: Api) -> None:
    handler, seen = scripted(status(500), status(500), ok(), ok())
    client = api.client(handler)
    api.run(chat, client)
    api.run(chat, client)
    keys = [r.headers["Idempotency-Key"] for r in seen]
    assert keys[0] == keys[1] == keys[2] != keys[3]
    assert keys[0].startswith("llm-sdk-")


def test_idempotency_key_can_be_given_and_is_not_sent_on_get(api: Api) -> None:
    models = httpx.Response(200, json={"object": "list", "data": []})
    handler, seen = scripted(ok(), models)
    client = api.client(handler)
    api.run(lambda c: c.chat.completions.create(messages=MESSAGES, idempotency_key="k-1"), client)
    api.run(lambda c: c.models.list(), client)
    assert seen[0].headers["Idempotency-Key"] == "k-1"
    assert "Idempotency-Key" not in seen[1].headers


def test_retry_count_header(api: Api) -> None:
    handler, seen = scripted(status(500), status(502), ok())
    api.run(chat, api.client(handler))
    assert [r.headers["X-Retry-Count"] for r in seen] == ["0", "1", "2"]


def test_failed_response_is_closed_before_sleeping(api: Api) -> None:
    bodies = [TrackedStream([b'{"error": {"message": "busy"}}']) for _ in range(2)]
    responses = [httpx.Response(503, stream=body) for body in bodies]
    handler, _ = scripted(*responses, ok())
    closed_at_sleep: list[bool] = []
    api.on_sleep = lambda _: closed_at_sleep.append(
        all(b.closed for b in bodies[: len(closed_at_sleep) + 1])
    )
    api.run(chat, api.client(handler))
    assert closed_at_sleep == [True, True]


@pytest.mark.parametrize(
    ("failure", "error_class"),
    [
        (httpx.ConnectError("refused"), sdk.APIConnectionError),
        (httpx.RemoteProtocolError("peer closed"), sdk.APIConnectionError),
        (httpx.ConnectTimeout("slow"), sdk.APITimeoutError),
        (httpx.ReadTimeout("slow"), sdk.APITimeoutError),
    ],
)
def test_transport_errors_are_retried_then_mapped(
    api: Api, failure: Exception, error_class: type[sdk.APIError]
) -> None:
    handler, seen = scripted(failure, ok())
    assert api.run(chat, api.client(handler)).choices[0].message.content == "hi"
    handler, seen = scripted(failure, failure, failure)
    with pytest.raises(error_class) as info:
        api.run(chat, api.client(handler))
    assert len(seen) == 3
    assert isinstance(info.value.__cause__, httpx.TransportError)  # chained, not leaked
    assert info.value.request is not None


def test_read_error_while_reading_the_body_is_retried(api: Api) -> None:
    body = TrackedStream([b'{"id": '], error=httpx.ReadError("reset"))
    handler, seen = scripted(httpx.Response(200, stream=body), ok())
    closed_at_sleep: list[bool] = []
    api.on_sleep = lambda _: closed_at_sleep.append(body.closed)
    assert api.run(chat, api.client(handler)).choices[0].message.content == "hi"
    assert len(seen) == 2
    assert closed_at_sleep == [True]


def test_retries_are_logged_without_secrets(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    handler, _ = scripted(status(503), ok())
    with caplog.at_level(logging.INFO, logger="sdk"):
        api.run(chat, api.client(handler, api_key="sk-very-secret"))
    assert "retrying POST /chat/completions in 0.50 s (retry 1 of 2)" in caplog.text
    assert "sk-very-secret" not in caplog.text
