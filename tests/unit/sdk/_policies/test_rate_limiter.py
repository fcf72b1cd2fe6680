"""The rate limiter: the ledger's decisions, and many concurrent calls on a simulated clock."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from kit.clients import Api
from kit.tokenizer_server import MODEL, USER, FakeServer, SimClock

import sdk
from sdk import RateLimiter, TokenRateLimitError
from sdk._policies.ratelimit import Reservation


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- the ledger --------------------------------------------------------------------------------


def test_requests_per_minute() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=2, clock=clock)
    assert isinstance(limiter.try_reserve(0), Reservation)
    clock.now = 10
    assert isinstance(limiter.try_reserve(0), Reservation)
    clock.now = 20
    assert limiter.try_reserve(0) == pytest.approx(40)  # the first leaves the window at 60
    clock.now = 60
    assert isinstance(limiter.try_reserve(0), Reservation)
    assert limiter.try_reserve(0) == pytest.approx(10)


def test_tokens_per_minute_and_refunds() -> None:
    clock = Clock()
    limiter = RateLimiter(tokens_per_minute=100, clock=clock)
    first = limiter.try_reserve(60)
    assert isinstance(first, Reservation)
    clock.now = 5
    second = limiter.try_reserve(40)
    assert isinstance(second, Reservation)
    assert limiter.try_reserve(30) == pytest.approx(55)  # wait for `first` to leave
    limiter.settle(first, 25)  # it used less than it reserved
    assert isinstance(limiter.try_reserve(30), Reservation)
    assert limiter.usage() == (3, 95)
    clock.now = 64.0
    assert limiter.usage() == (2, 70)  # `first` left the window
    limiter.settle(first, 0)  # settling an entry that already left changes nothing
    assert limiter.usage() == (2, 70)


def test_a_pause_stops_everything_until_it_ends() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=100, clock=clock)
    limiter.pause(12.5)
    assert limiter.try_reserve(0) == pytest.approx(12.5)
    clock.now = 12.5
    assert isinstance(limiter.try_reserve(0), Reservation)


def test_a_call_bigger_than_the_limit_fails_at_once() -> None:
    limiter = RateLimiter(tokens_per_minute=100)
    with pytest.raises(TokenRateLimitError, match="needs 101 tokens"):
        limiter.try_reserve(101)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"requests_per_minute": 0},
        {"tokens_per_minute": -5},
        {"tokens_per_minute": 1.5},
        {"window": 0},
    ],
)
def test_bad_limits_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RateLimiter(**kwargs)


# --- many calls, one limiter ---------------------------------------------------------------------

TPM, RPM, CALLS, MAX_TOKENS = 400, 40, 50, 16


def check_windows(server: FakeServer, *, tpm: int, rpm: int) -> None:
    """In every 60-second window, the calls the server saw used at most tpm tokens and were at
    most rpm requests (every window that matters starts at one of the calls)."""
    calls = sorted((t, entry["usage"]["total_tokens"]) for t, _, entry in server.log)
    assert len(calls) == CALLS
    for start, _ in calls:
        window = [tokens for t, tokens in calls if start <= t < start + 60]
        assert sum(window) <= tpm, (start, sum(window))
        assert len(window) <= rpm
    # and the limiter did make them wait: the calls spread over several minutes
    assert calls[-1][0] >= 60 * (sum(t for _, t in calls) // tpm - 1)


def test_concurrent_async_calls_never_exceed_the_limits() -> None:
    clock = SimClock(workers=CALLS)
    server = FakeServer(clock=clock)
    limiter = RateLimiter(requests_per_minute=RPM, tokens_per_minute=TPM, clock=clock)

    async def main() -> None:
        client = sdk.AsyncClient(
            base_url="http://test/v1",
            transport=__import__("httpx").MockTransport(server),
            rate_limiter=limiter,
            sleep=clock.asleep,
            max_retries=0,
        )
        await client.tokenizer(MODEL)  # fetched once, before the clock starts

        async def one(i: int) -> None:
            try:
                messages = [{"role": "user", "content": f"request {i} " + "hello " * (i % 7)}]
                await client.chat.completions.create(
                    model=MODEL, messages=messages, max_tokens=MAX_TOKENS
                )
            finally:
                clock.done()

        await asyncio.gather(*(one(i) for i in range(CALLS)))

    asyncio.run(main())
    check_windows(server, tpm=TPM, rpm=RPM)


def test_threads_sharing_a_sync_client_never_exceed_the_limits() -> None:
    import httpx

    clock = SimClock(workers=CALLS)
    server = FakeServer(clock=clock)
    limiter = RateLimiter(requests_per_minute=RPM, tokens_per_minute=TPM, clock=clock)
    client = sdk.Client(
        base_url="http://test/v1",
        transport=httpx.MockTransport(server),
        rate_limiter=limiter,
        sleep=clock.sleep,
        max_retries=0,
    )
    client.tokenizer(MODEL)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            messages = [{"role": "user", "content": f"request {i} " + "hello " * (i % 7)}]
            client.chat.completions.create(model=MODEL, messages=messages, max_tokens=MAX_TOKENS)
        except BaseException as exc:
            errors.append(exc)
        finally:
            clock.done()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CALLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    check_windows(server, tpm=TPM, rpm=RPM)


def test_a_429_with_retry_after_pauses_the_limiter(api: Api) -> None:
    clock = Clock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    server = FakeServer(clock=clock, rate_limit_first=1, retry_after=30.0)
    limiter = RateLimiter(requests_per_minute=100, clock=clock)
    client = api.client(
        server,
        rate_limiter=limiter,
        sleep=sleep,
        retry_policy=sdk.RetryPolicy(max_retries=1, jitter=0),
    )
    api.run(lambda c: c.chat.completions.create(model=MODEL, messages=USER), client)
    assert slept == [30.0]  # the retry waited for Retry-After ...
    assert limiter.try_reserve(0) is not None and clock.now == 30.0
    # ... and so did everyone else: a call started during the pause waits for its end
    limiter.pause(10)
    api.run(lambda c: c.chat.completions.create(model=MODEL, messages=USER), client)
    assert slept == [30.0, 10.0]


def test_usage_replaces_the_reservation_and_refused_calls_cost_nothing(api: Api) -> None:
    clock = Clock()
    server = FakeServer(clock=clock, rate_limit_first=1, retry_after=1)
    limiter = RateLimiter(tokens_per_minute=10_000, clock=clock)

    def sleep(seconds: float) -> None:
        clock.now += seconds

    # no budget: the toy model's window is smaller than these calls, and only the limiter is
    # under test (the default budget would refuse them once the limiter fetched the tokenizer)
    client = api.client(server, rate_limiter=limiter, sleep=sleep, token_budget=None)
    with pytest.raises(sdk.RateLimitError):
        api.run(
            lambda c: c.chat.completions.create(model=MODEL, messages=USER, max_tokens=500), client
        )
    assert limiter.usage() == (1, 0)  # the 429 is refunded (its request still counts)
    reply = api.run(
        lambda c: c.chat.completions.create(model=MODEL, messages=USER, max_tokens=500), client
    )
    assert clock.now == 1  # it waited for the pause the 429 asked for
    assert limiter.usage() == (2, reply.usage.total_tokens)


def test_requests_only_limits_need_no_tokenizer(api: Api, server: FakeServer) -> None:
    client = api.client(server, rate_limiter=RateLimiter(requests_per_minute=5))
    api.run(lambda c: c.chat.completions.create(model=MODEL, messages=USER), client)
    api.run(lambda c: c.models.retrieve(MODEL), client)
    assert server.paths() == ["POST /v1/chat/completions", f"GET /v1/models/{MODEL}"]
