"""Routing decisions on their own: strategies, health and failover on a simulated clock."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import sdk
from sdk._protocol.failover import NextAttempt, moves_on, next_attempt
from sdk._protocol.prefix import AffinityPolicy, prefix_key
from sdk._protocol.routing import HealthPolicy, Routing

POLICY = sdk.RetryPolicy(max_retries=3, jitter=0.0)


@dataclass(frozen=True)
class E:
    name: str
    weight: float = 1.0
    models: frozenset[str] | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def routing(*names: str, strategy: str = "least_outstanding", **kwargs: Any) -> Routing:
    return Routing([E(n) for n in names], strategy, **kwargs)


def picks(r: Routing, n: int, key: tuple[bytes, ...] = (), release: bool = True) -> list[str]:
    """``n`` picks over all endpoints, each released at once unless told otherwise."""
    names = []
    for _ in range(n):
        i = r.pick(range(len(r.endpoints)), key)
        assert i is not None
        names.append(r.endpoints[i].name)
        if release:
            r.release(i)
    return names


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoints", "strategy", "message"),
    [
        ([], "round_robin", "at least one endpoint"),
        ([E("a")], "random", "unknown routing strategy 'random'"),
        ([E("a"), E("b"), E("a")], "round_robin", "'a' appears twice"),
    ],
)
def test_bad_configuration(endpoints: list[E], strategy: str, message: str) -> None:
    with pytest.raises(sdk.RouterConfigError, match=message):
        Routing(endpoints, strategy)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: HealthPolicy(failures=0), "failures"),
        (lambda: HealthPolicy(cooldown=float("nan")), "cooldown must be a number"),
        (lambda: HealthPolicy(cooldown=-1), "cooldown must be >= 0"),
        (lambda: AffinityPolicy(block_size=0), "block_size"),
        (lambda: AffinityPolicy(remembered_blocks=1.5), "remembered_blocks"),
        (lambda: AffinityPolicy(busy_threshold=-1), "busy_threshold"),
    ],
)
def test_bad_policies(make: Any, message: str) -> None:
    with pytest.raises(sdk.RouterConfigError, match=message):
        make()


def test_candidates_serve_the_model() -> None:
    a, c = E("a", models=frozenset({"x"})), E("c", models=frozenset({"y"}))
    r = Routing([a, E("b"), c], "round_robin")
    assert r.candidates("x") == [0, 1]
    assert r.candidates(None) == [0, 1, 2]
    assert r.candidates("y", only={0, 2}) == [2]
    with pytest.raises(sdk.NoEndpointError, match=r"'z' \(a: x; c: y\)"):
        r.candidates("z", only={0, 2})
    assert r.candidates("y", only={1}) == [1]  # b serves any model


# --- strategies -----------------------------------------------------------------------------


def test_weighted_round_robin_interleaves() -> None:
    r = Routing([E("a", 1), E("b", 2)], "round_robin")
    order = picks(r, 6)
    assert Counter(order) == {"a": 2, "b": 4}
    assert "aa" not in "".join(order)  # smooth: never the light one twice in a row


def test_round_robin_over_what_is_allowed() -> None:
    r = routing("a", "b", "c", strategy="round_robin")
    assert [r.pick([0, 1, 2], avoid={1}) for _ in range(4)] == [0, 2, 0, 2]
    assert r.pick([0, 1], avoid={0, 1}) is None


def test_least_outstanding_counts_calls_in_flight() -> None:
    r = Routing([E("a"), E("b"), E("c", weight=2)], "least_outstanding")
    held = picks(r, 4, release=False)
    # c (weight 2) takes twice the load; ties go to the endpoint picked least recently
    assert held == ["a", "b", "c", "c"]
    r.release(0)
    assert picks(r, 1, release=False) == ["a"]
    r.release(0)
    r.release(0)  # never below zero
    assert [s.outstanding for s in r.status()] == [0, 1, 2]


def chat(*contents: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": c} for c in contents]}


SYSTEM = "You are a helpful assistant. " * 40  # several blocks


def test_prefix_affinity_keeps_a_conversation_on_one_endpoint() -> None:
    r = routing("a", "b", "c", strategy="prefix_affinity")
    key = prefix_key(chat(SYSTEM, "first question"), 256)
    first = picks(r, 1, key)[0]
    later = prefix_key(chat(SYSTEM, "first question", "an answer", "a follow-up"), 256)
    assert picks(r, 5, later) == [first] * 5


def test_new_prefixes_spread_over_the_ring() -> None:
    r = routing("a", "b", "c", strategy="prefix_affinity")
    owners = {picks(r, 1, prefix_key(chat(f"system prompt {n}"), 256))[0] for n in range(30)}
    assert owners == {"a", "b", "c"}
    # a second router (another process) puts a new prefix where the first one did
    other = routing("a", "b", "c", strategy="prefix_affinity")
    key = prefix_key(chat("a prompt neither has seen"), 256)
    assert picks(r, 1, key) == picks(other, 1, key)


def test_the_longest_known_prefix_wins() -> None:
    r = routing("a", "b", strategy="prefix_affinity")
    short = prefix_key(chat(SYSTEM), 256)
    long = prefix_key(chat(SYSTEM, "x" * 600), 256)
    r.take(0, short)  # a has the system prompt
    r.take(1, long)  # b has it and more: it learnt the shared blocks too
    r.release(0), r.release(1)
    assert picks(r, 1, prefix_key(chat(SYSTEM, "x" * 600, "y"), 256)) == ["b"]
    r.take(0, short)  # a took the system prompt last: a new conversation goes there
    r.release(0)
    assert picks(r, 1, prefix_key(chat(SYSTEM, "other"), 256)) == ["a"]


def test_a_busy_or_cooling_affine_endpoint_hands_over_to_the_least_loaded() -> None:
    clock = Clock()
    r = routing(
        "a", "b", strategy="prefix_affinity", affinity=AffinityPolicy(busy_threshold=1), clock=clock
    )
    key = prefix_key(chat(SYSTEM), 256)
    home = r.pick([0, 1], key)
    assert home is not None
    assert r.pick([0, 1], key) == home  # 1 in flight there, 0 elsewhere: within the threshold
    away = r.pick([0, 1], key)  # 2 against 0: too busy
    assert away == 1 - home
    assert r.pick([0, 1], key) == away  # the prefix followed it
    for i in (home, home, away, away):
        r.release(i)
    r.failed(away, retry_after=5)
    assert r.pick([0, 1], key) == home  # cooling down: back home


def test_without_a_key_affinity_is_least_outstanding() -> None:
    r = routing("a", "b", strategy="prefix_affinity")
    assert picks(r, 2, release=False) == ["a", "b"]


def test_remembered_blocks_are_bounded() -> None:
    r = routing("a", "b", strategy="prefix_affinity", affinity=AffinityPolicy(remembered_blocks=3))
    old = prefix_key(chat("z" * 1000), 256)  # 5 blocks: the first two are forgotten at once
    r.take(1, old)
    assert list(r.prefixes._learned) == list(old[2:])


def test_prefix_key() -> None:
    a = prefix_key(chat(SYSTEM), 64)
    b = prefix_key(chat(SYSTEM, "more"), 64)
    shared = next(n for n, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    assert shared == len(a) - 1  # all but the last, partial block of a
    assert prefix_key({"prompt": "abc" * 100}, 64)[0] == prefix_key({"prompt": "abc" * 50}, 64)[0]
    assert prefix_key({"prompt": [1, 2, 3]}, 64) != prefix_key({"prompt": [1, 2, 4]}, 64)
    assert prefix_key({"input": "embed me"}, 64) == ()
    assert prefix_key(None, 64) == ()


# --- health ---------------------------------------------------------------------------------


def test_cooldown_after_consecutive_failures_and_return() -> None:
    clock = Clock()
    r = routing("a", "b", health=HealthPolicy(failures=2, cooldown=30), clock=clock)
    r.failed(0)
    assert picks(r, 2) == ["a", "b"]  # one failure is not enough
    r.failed(0)
    assert r.status()[0].cooldown_left == 30 and r.status()[0].consecutive_failures == 2
    assert picks(r, 3) == ["b", "b", "b"]
    clock.now += 30
    assert picks(r, 2) == ["a", "b"]  # back after its cooldown
    r.failed(0)  # still on probation: one more failure and it is out again
    assert r.status()[0].cooldown_left == 30
    r.succeeded(0)
    clock.now += 30
    r.failed(0)
    assert r.status()[0].cooldown_left == 0  # a success reset the count
    assert r.status()[0].failures == 4 and r.status()[0].picks == 2


def test_retry_after_sets_an_endpoint_aside_at_once() -> None:
    clock = Clock()
    r = routing("a", "b", clock=clock)
    r.failed(0, retry_after=7.5)
    assert r.status()[0].cooldown_left == 7.5
    assert r.by_readiness([0, 1]) == [1, 0]


def test_when_all_cool_down_the_one_back_first_is_tried() -> None:
    clock = Clock()
    r = routing("a", "b", "c", health=HealthPolicy(failures=1, cooldown=10), clock=clock)
    for i in (0, 2):
        r.failed(i)
    clock.now += 3
    r.failed(1)
    assert picks(r, 2) == ["a", "a"]


# --- failover decisions ---------------------------------------------------------------------


def status_error(status: int, headers: dict[str, str] | None = None) -> sdk.APIStatusError:
    response = httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://x"))
    cls = {429: sdk.RateLimitError, 409: sdk.ConflictError}.get(status, sdk.APIStatusError)
    after = response.headers.get("retry-after")
    retry_after = None if after is None else float(after)
    return cls("boom", response=response, status_code=status, retry_after=retry_after)


@pytest.mark.parametrize(
    ("error", "moves"),
    [
        (sdk.APIConnectionError("refused"), True),
        (sdk.APITimeoutError("slow"), True),
        (status_error(408), True),
        (status_error(429), True),
        (status_error(500), True),
        (status_error(503), True),
        (status_error(400), False),
        (status_error(404), False),
        (status_error(409), False),
        (ValueError("not an API error"), False),
    ],
)
def test_moves_on(error: BaseException, moves: bool) -> None:
    assert moves_on(error) is moves


def test_next_attempt() -> None:
    refused = sdk.APIConnectionError("refused")
    assert next_attempt(refused, 0, POLICY, untried=True, rand=0.5) == NextAttempt(0.0, False)
    # every endpoint tried: the policy's backoff, anywhere
    assert next_attempt(refused, 1, POLICY, untried=False, rand=0.0) == NextAttempt(1.0, False)
    assert next_attempt(refused, 3, POLICY, untried=True, rand=0.0) is None  # out of retries
    # 409: the server works on this key; wait and ask the same one
    assert next_attempt(status_error(409), 0, POLICY, untried=True, rand=0.0) == NextAttempt(
        0.5, True
    )
    assert next_attempt(status_error(400), 0, POLICY, untried=True, rand=0.0) is None
    no = status_error(503, {"x-should-retry": "false"})
    assert next_attempt(no, 0, POLICY, untried=True, rand=0.0) is None
    # a long Retry-After does not stop a failover, only a retry of the same endpoint
    slow = status_error(429, {"retry-after": "600"})
    assert next_attempt(slow, 0, POLICY, untried=True, rand=0.0) == NextAttempt(0.0, False)
    assert next_attempt(slow, 0, POLICY, untried=False, rand=0.0) is None
