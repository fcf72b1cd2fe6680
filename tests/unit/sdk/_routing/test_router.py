"""``Router`` / ``AsyncRouter`` over scripted replicas: strategies, failover, health, aliases
and configuration errors (every test runs once per client flavour)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from kit.clients import Api
from kit.replicas import Replicas

import sdk
from sdk import Endpoint, HealthPolicy

M = [{"role": "user", "content": "Hi"}]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def chat(api: Api, router: Any, **kwargs: Any) -> Any:
    return api.run(lambda r: r.chat.completions.create(model="m", messages=M, **kwargs), router)


def stream(api: Api, router: Any, **kwargs: Any) -> Any:
    """An opened stream, not read yet."""
    return api.run(
        lambda r: r.chat.completions.create(model="m", messages=M, stream=True, **kwargs), router
    )


def keys(requests: list[httpx.Request]) -> list[tuple[str | None, str | None]]:
    return [(r.headers.get("idempotency-key"), r.headers.get("x-retry-count")) for r in requests]


# --- strategies ---------------------------------------------------------------------------------


def test_round_robin_takes_turns(api: Api) -> None:
    reps = Replicas()
    router = api.router(reps, reps.urls, strategy="round_robin")
    answers = [chat(api, router).choices[0].message.content for _ in range(6)]
    assert answers == list("abcabc")
    assert [s.picks for s in router.endpoint_status()] == [2, 2, 2]


def test_least_outstanding_counts_open_streams(api: Api) -> None:
    reps = Replicas()
    router = api.router(reps, reps.urls)  # the default strategy
    api.keep_loop()
    first, second = stream(api, router), stream(api, router)
    assert [s.outstanding for s in router.endpoint_status()] == [1, 1, 0]
    assert chat(api, router).response_info.endpoint == "c.test"
    assert api.run(lambda r: api.drain(_ready(first)), router)[1].choices[0].delta.content == "a"
    api.run(lambda r: second.close(), router)  # closed unread: it ends too
    assert [s.outstanding for s in router.endpoint_status()] == [0, 0, 0]
    assert chat(api, router).response_info.endpoint == "a.test"  # picked least recently


async def _aready(value: Any) -> Any:
    return value


def _ready(value: Any) -> Any:
    """``api.drain`` awaits the async stream it is given; hand it an already open one."""
    return _aready(value) if isinstance(value, sdk.AsyncStream) else value


def test_prefix_affinity_keeps_conversations_together(api: Api) -> None:
    reps = Replicas()
    router = api.router(reps, reps.urls, strategy="prefix_affinity")
    system = {"role": "system", "content": "You answer in French. " * 30}
    homes = {}
    for n in range(6):
        conversation = [system, {"role": "user", "content": f"question {n} " * 40}]
        first = api.run(
            lambda r, c=conversation: r.chat.completions.create(model="m", messages=c), router
        )
        conversation += [
            {"role": "assistant", "content": "réponse"},
            {"role": "user", "content": "et?"},
        ]
        second = api.run(
            lambda r, c=conversation: r.chat.completions.create(model="m", messages=c), router
        )
        assert second.response_info.endpoint == first.response_info.endpoint
        homes[n] = first.response_info.endpoint
    assert len(set(homes.values())) == 1  # the shared system prompt: one replica caches it


# --- failover -----------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["refused", "timeout", 408, 429, 500, 502, 503])
def test_failover_to_another_endpoint_at_once(api: Api, failure: int | str) -> None:
    reps = Replicas()
    reps["a"].fail(failure)
    router = api.router(reps, reps.urls, strategy="round_robin")
    reply = chat(api, router)
    assert reply.choices[0].message.content == "b"
    assert reply.response_info.endpoint == "b.test" and reply.response_info.retries_taken == 1
    assert reps.served() == ["a", "b"]
    (key_a, count_a), (key_b, count_b) = keys(reps["a"].calls() + reps["b"].calls())
    assert key_a == key_b and key_a is not None and (count_a, count_b) == ("0", "1")
    assert api.sleeps == []  # another endpoint need not wait


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_never_fail_over(api: Api, status: int) -> None:
    reps = Replicas()
    reps["a"].fail(status)
    router = api.router(reps, reps.urls, strategy="round_robin")
    with pytest.raises(sdk.APIStatusError) as caught:
        chat(api, router)
    assert caught.value.status_code == status
    assert reps.served() == ["a"]
    assert router.endpoint_status()[0].consecutive_failures == 0  # it answered: alive


def test_a_conflict_retries_the_same_endpoint(api: Api) -> None:
    reps = Replicas()
    reps["a"].fail(409)  # the server still works on this idempotency key
    router = api.router(reps, reps.urls, strategy="round_robin")
    assert chat(api, router).response_info.endpoint == "a.test"
    assert reps.served() == ["a", "a"] and api.sleeps == [0.5]
    assert len({key for key, _ in keys(reps["a"].calls())}) == 1


@pytest.mark.parametrize("failure", ["cut", 503, "refused"])
def test_a_stream_fails_over_before_its_first_event(api: Api, failure: int | str) -> None:
    reps = Replicas()
    reps["a"].fail(failure)
    router = api.router(reps, reps.urls, strategy="round_robin")
    chunks = api.run(
        lambda r: api.drain(r.chat.completions.create(model="m", messages=M, stream=True)), router
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "b"
    assert reps.served() == ["a", "b"]
    assert len({key for key, _ in keys(reps["a"].calls() + reps["b"].calls())}) == 1


def test_a_stream_that_broke_after_its_first_event_is_not_repeated(api: Api) -> None:
    reps = Replicas()
    reps["a"].fail("mid_stream")
    router = api.router(reps, reps.urls, strategy="round_robin")
    api.keep_loop()
    opened = stream(api, router)
    with pytest.raises(sdk.APIConnectionError):
        api.run(lambda r: api.drain(_ready(opened)), router)
    assert reps.served() == ["a"]  # the caller saw a chunk: a second run would repeat it
    status = router.endpoint_status()[0]
    assert (status.outstanding, status.consecutive_failures) == (0, 1)


def test_every_endpoint_tried_then_backoff_then_give_up(api: Api) -> None:
    reps = Replicas()
    for name in "abc":
        reps[name].fail(503, 503)
    router = api.router(reps, reps.urls, strategy="round_robin", max_retries=4)
    with pytest.raises(sdk.InternalServerError):
        chat(api, router)
    served = reps.served()
    assert sorted(served[:3]) == ["a", "b", "c"] and len(served) == 5
    assert api.sleeps == [2.0]  # one backoff, after the round over all three
    assert len({key for key, _ in keys([r for _, r in reps.log])}) == 1
    assert [count for _, count in keys([r for _, r in reps.log])] == ["0", "1", "2", "3", "4"]


def test_explicit_idempotency_key_is_kept_everywhere(api: Api) -> None:
    reps = Replicas()
    reps["a"].fail("refused")
    router = api.router(reps, reps.urls, strategy="round_robin")
    chat(api, router, idempotency_key="mine")
    assert {key for key, _ in keys([r for _, r in reps.log])} == {"mine"}


def test_get_calls_carry_no_idempotency_key_and_fail_over(api: Api) -> None:
    reps = Replicas()
    reps["a"].fail(500)
    router = api.router(reps, reps.urls, strategy="round_robin")
    listed = api.run(lambda r: r.models.list(), router)
    assert listed.data[0].owned_by == "b" and keys([r for _, r in reps.log])[0][0] is None


def test_completions_and_embeddings_are_routed(api: Api) -> None:
    reps = Replicas()
    reps["a"].fail("timeout")
    router = api.router(reps, reps.urls, strategy="round_robin")
    text = api.run(lambda r: r.completions.create(model="m", prompt="Once"), router)
    vectors = api.run(lambda r: r.embeddings.create(model="m", input=["x", "y"]), router)
    assert text.choices[0].text == "b" and len(vectors.data) == 2
    assert vectors.response_info.endpoint == "c.test"


# --- health -------------------------------------------------------------------------------------


def test_cooldown_sets_a_failing_endpoint_aside_and_lets_it_back(api: Api) -> None:
    reps, clock = Replicas(), Clock()
    reps["a"].down = True
    router = api.router(
        reps,
        reps.urls,
        strategy="round_robin",
        health=HealthPolicy(failures=2, cooldown=10),
        clock=clock,
    )
    served = [chat(api, router).response_info.endpoint for _ in range(6)]
    assert all(name != "a.test" for name in served)
    assert len(reps["a"].requests) == 2  # then it cooled down and got nothing
    assert router.endpoint_status()[0].cooldown_left == 10
    reps["a"].down = False
    clock.now = 10.0
    served = [chat(api, router).response_info.endpoint for _ in range(3)]
    assert "a.test" in served and router.endpoint_status()[0].consecutive_failures == 0


def test_a_429_keeps_the_endpoint_out_for_its_retry_after(api: Api) -> None:
    reps, clock = Replicas(["a", "b"]), Clock()
    reps["a"].retry_after = 30
    reps["a"].fail(429)
    router = api.router(reps, reps.urls, strategy="round_robin", clock=clock)
    assert [chat(api, router).response_info.endpoint for _ in range(3)] == ["b.test"] * 3
    clock.now = 30
    assert "a.test" in [chat(api, router).response_info.endpoint for _ in range(2)]


# --- models, aliases, pinning -------------------------------------------------------------------


def test_aliases_rename_the_model_per_endpoint(api: Api) -> None:
    reps = Replicas(["a", "b"])
    a = Endpoint(reps["a"].url, aliases={"llama": "m"})  # a calls it "m"
    b = Endpoint(reps["b"].url, models={"llama", "qwen"})
    router = api.router(reps, [a, b], strategy="round_robin")
    for _ in range(2):
        api.run(lambda r: r.chat.completions.create(model="llama", messages=M), router)
    sent = [
        httpx.Request("POST", "x", content=r.content) for r in reps["a"].calls() + reps["b"].calls()
    ]
    assert [__import__("json").loads(r.content)["model"] for r in sent] == ["m", "llama"]
    card = api.run(lambda r: r.pin("a.test").models.retrieve("llama"), router)
    assert reps["a"].requests[-1].url.path == "/v1/models/m" and card.id == "llama"
    listed = api.run(lambda r: r.pin("a.test").models.list(), router)
    assert [m.id for m in listed.data] == ["llama"]  # "m" as the router's callers name it


def test_a_model_no_endpoint_serves_fails_before_sending(api: Api) -> None:
    reps = Replicas(["a", "b"])
    endpoints = [Endpoint(reps["a"].url, models={"x"}), Endpoint(reps["b"].url, models={"y"})]
    router = api.router(reps, endpoints)
    with pytest.raises(sdk.NoEndpointError, match=r"'z'.*a\.test: x; b\.test: y"):
        api.run(lambda r: r.chat.completions.create(model="z", messages=M), router)
    assert reps.log == []
    assert (
        api.run(lambda r: r.chat.completions.create(model="y", messages=M), router)
        .choices[0]
        .message.content
        == "b"
    )


def test_pin_sends_everything_to_one_endpoint(api: Api) -> None:
    reps = Replicas()
    router = api.router(reps, reps.urls)
    pinned = router.pin("c.test")
    assert {chat(api, pinned).response_info.endpoint for _ in range(3)} == {"c.test"}
    reps["c"].fail(503)
    with pytest.raises(sdk.InternalServerError):  # nowhere else to go: retried, then given up
        chat(api, pinned.with_options(max_retries=0))
    assert repr(
        router
    ) == "Router(endpoints=['a.test', 'b.test', 'c.test'], strategy='least_outstanding')".replace(
        "Router", type(router).__name__
    )
    assert router.endpoints[2].name == "c.test" and router.base_url == httpx.URL("http://a.test/v1")


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: sdk.Router([]), "at least one endpoint"),
        (lambda: sdk.Router(["http://a/v1"], strategy="fastest"), "unknown routing strategy"),
        (lambda: sdk.Router(["http://a/v1", "http://a/v1"]), "'a' appears twice"),
        (lambda: sdk.Router("http://a/v1"), "endpoints must be a list"),
        (lambda: Endpoint("ftp://a"), "invalid base_url"),
        (lambda: Endpoint("http://a", weight=0), "weight must be a number > 0"),
        (lambda: Endpoint("http://a", weight=float("inf")), "weight must be finite"),
        (lambda: Endpoint("http://a", models="llama"), "collection of names"),
        (lambda: Endpoint("http://a", token_budget="lots"), "token_budget must be"),
        (lambda: Endpoint("http://a", rate_limiter=60), "rate_limiter must be"),
        (lambda: sdk.Router(["http://a/v1"]).with_options(base_url="http://b"), "base_url belong"),
        (lambda: sdk.Router(["http://a/v1"]).pin("b"), "no endpoint is called 'b'"),
    ],
)
def test_bad_configuration_is_a_typed_error(make: Any, message: str) -> None:
    with pytest.raises(sdk.RouterConfigError, match=message):
        make()


def test_endpoint_names_and_defaults() -> None:
    plain = Endpoint("http://10.0.0.7:8000/v1")
    assert plain.name == "10.0.0.7:8000" and plain.models is None and plain.weight == 1.0
    assert Endpoint("https://h/api/v2").name == "h/api/v2"
    served = Endpoint("http://h", models=["x"], aliases={"y": "own-y"})
    assert served.models == frozenset({"x", "y"}) and served.model_name("y") == "own-y"
    assert "key" not in repr(Endpoint("http://h", api_key="secret-key"))


def test_max_retries_per_call_bounds_failover_too(api: Api) -> None:
    reps = Replicas()
    reps["a"].fail(503)
    router = api.router(reps, reps.urls, strategy="round_robin")
    with pytest.raises(sdk.InternalServerError):
        chat(api, router, max_retries=0)
    assert reps.served() == ["a"]
