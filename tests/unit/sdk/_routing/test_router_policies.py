"""A router's per-endpoint policies: each endpoint's own tokenizer for budgets, and its own
rate limits, never exceeded in any 60 s window, failover included (simulated clocks)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest
from kit.clients import Api
from kit.tokenizer_server import CHATML, MODEL, USER, FakeServer, SimClock, toy_export

import sdk
from sdk import ContextWindowExceededError, Endpoint, RateLimiter, TokenBudget

# b's template adds a system line: the same messages are more tokens there
PREAMBLE = "<|im_start|>system\nYou run on replica b, so you answer briefly.<|im_end|>\n" + CHATML


class Hosts:
    """One ``FakeServer`` per host; every generation request is logged with the clock's time."""

    def __init__(self, servers: dict[str, FakeServer], clock: Any = lambda: 0.0) -> None:
        self.servers = servers
        self.clock = clock
        self.sent: dict[str, list[float]] = {name: [] for name in servers}
        self._lock = threading.Lock()

    def url(self, name: str) -> str:
        return f"http://{name}.test/v1"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        name = request.url.host.removesuffix(".test")
        if request.url.path.endswith("/completions"):
            with self._lock:
                self.sent[name].append(self.clock())
        return self.servers[name](request)

    def bodies(self, name: str) -> list[dict[str, Any]]:
        server = self.servers[name]
        return [
            json.loads(r.content) for r in server.requests if r.url.path.endswith("completions")
        ]


def two_tokenizers() -> Hosts:
    a_export, a_ranks = toy_export(context_length=128)
    b_export, b_ranks = toy_export(context_length=128, chat_template=PREAMBLE, model="toy-b")
    return Hosts({"a": FakeServer(a_export, a_ranks), "b": FakeServer(b_export, b_ranks)})


def test_budgets_use_the_tokenizer_of_the_endpoint_the_call_goes_to(api: Api) -> None:
    hosts = two_tokenizers()
    endpoints = [Endpoint(hosts.url("a")), Endpoint(hosts.url("b"), aliases={MODEL: "toy-b"})]
    router = api.router(
        hosts, endpoints, strategy="round_robin", token_budget=TokenBudget(clamp_max_tokens=True)
    )
    for _ in range(2):
        reply = api.run(
            lambda r: r.chat.completions.create(model=MODEL, messages=USER, max_tokens=1000), router
        )
        # the server counted the prompt with its own tokenizer; the client had left exactly
        # the rest of that server's window for the answer
        sent = hosts.bodies(reply.response_info.endpoint.removesuffix(".test"))[-1]
        assert sent["max_tokens"] == 128 - reply.usage.prompt_tokens
    a_max, b_max = hosts.bodies("a")[0]["max_tokens"], hosts.bodies("b")[0]["max_tokens"]
    assert a_max > b_max  # b's template makes the prompt longer there
    assert hosts.bodies("b")[0]["model"] == "toy-b"
    fetched = [r.url.path for r in hosts.servers["b"].requests if r.method == "GET"]
    assert fetched[0] == "/v1/models/toy-b/tokenizer"  # b's own export, by b's own name


def test_a_budget_refuses_on_the_endpoint_whose_window_is_too_small(api: Api) -> None:
    hosts = two_tokenizers()
    hosts.servers["b"] = FakeServer(*toy_export(context_length=4096, model="toy-b"))
    endpoints = [Endpoint(hosts.url("a")), Endpoint(hosts.url("b"), aliases={MODEL: "toy-b"})]
    router = api.router(hosts, endpoints, token_budget=TokenBudget())
    long = [{"role": "user", "content": "hello world " * 40}]
    with pytest.raises(ContextWindowExceededError) as caught:
        api.run(
            lambda r: r.pin("a.test").chat.completions.create(model=MODEL, messages=long), router
        )
    assert caught.value.context_length == 128 and hosts.bodies("a") == []
    reply = api.run(
        lambda r: r.pin("b.test").chat.completions.create(model=MODEL, messages=long), router
    )
    assert reply.usage.prompt_tokens > 128
    # per-endpoint tokenizers and counts
    count_a = api.run(lambda r: r.pin("a.test").count_tokens(MODEL, messages=long), router)
    tok_b = api.run(lambda r: r.pin("b.test").tokenizer(MODEL), router)
    assert count_a.context_length == 128 and tok_b.context_length == 4096
    assert api.run(lambda r: r.count_tokens(MODEL, messages=long), router).context_length == 128


def test_a_full_endpoint_hands_calls_to_one_with_room(api: Api) -> None:
    hosts = Hosts({"a": FakeServer(), "b": FakeServer()})
    endpoints = [
        Endpoint(
            hosts.url("a"), rate_limiter=RateLimiter(requests_per_minute=2, clock=lambda: 0.0)
        ),
        Endpoint(
            hosts.url("b"), rate_limiter=RateLimiter(requests_per_minute=20, clock=lambda: 0.0)
        ),
    ]
    router = api.router(hosts, endpoints, strategy="round_robin")
    for _ in range(20):
        api.run(lambda r: r.chat.completions.create(model=MODEL, messages=USER), router)
    assert (len(hosts.sent["a"]), len(hosts.sent["b"])) == (2, 18)
    assert api.sleeps == []  # nobody waited while an endpoint had room


def test_when_every_endpoint_is_full_the_call_waits_for_the_first_room(api: Api) -> None:
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    hosts = Hosts({"a": FakeServer(), "b": FakeServer()}, clock)
    endpoints = [
        Endpoint(hosts.url("a"), rate_limiter=RateLimiter(requests_per_minute=1, clock=clock)),
        Endpoint(hosts.url("b"), rate_limiter=RateLimiter(requests_per_minute=1, clock=clock)),
    ]
    api.on_sleep = lambda seconds: now.__setitem__(0, now[0] + seconds)
    router = api.router(hosts, endpoints)
    now[0] = 10.0
    api.run(lambda r: r.chat.completions.create(model=MODEL, messages=USER), router)
    now[0] = 20.0
    api.run(lambda r: r.chat.completions.create(model=MODEL, messages=USER), router)
    api.run(lambda r: r.chat.completions.create(model=MODEL, messages=USER), router)
    assert api.sleeps == [50.0]  # a's minute ends first (at 70)
    assert hosts.sent == {"a": [10.0, 70.0], "b": [20.0]}


# --- many concurrent calls: limits per endpoint, failover included -------------------------------

RPM, TPM, CALLS, MAX_TOKENS = 6, 300, 60, 16


def check_windows(hosts: Hosts) -> None:
    """In every 60 s window, each endpoint received at most RPM requests and its answers used at
    most TPM tokens (every window that matters starts at one of its requests)."""
    for name, server in hosts.servers.items():
        sent = sorted(hosts.sent[name])
        used = sorted((t, entry["usage"]["total_tokens"]) for t, _, entry in server.log)
        for start in sent:
            assert sum(1 for t in sent if start <= t < start + 60) <= RPM, (name, start)
            assert sum(n for t, n in used if start <= t < start + 60) <= TPM, (name, start)


@pytest.mark.parametrize("flavour", ["tasks", "threads"])
def test_concurrent_calls_never_exceed_any_endpoints_limits(flavour: str) -> None:
    clock = SimClock(workers=CALLS)
    servers = {name: FakeServer(clock=clock) for name in "abc"}
    servers["a"].rate_limit_first, servers["a"].retry_after = 3, 20.0  # 429s: fail over
    hosts = Hosts(servers, clock)
    endpoints = [
        Endpoint(
            hosts.url(name),
            rate_limiter=RateLimiter(requests_per_minute=RPM, tokens_per_minute=TPM, clock=clock),
        )
        for name in "abc"
    ]
    # the limiter alone is under test: no token budget
    settings: dict[str, Any] = {"clock": clock, "max_retries": 3, "token_budget": None}
    transport = httpx.MockTransport(hosts)
    served: list[str] = []

    def messages(i: int) -> list[dict[str, Any]]:
        return [{"role": "user", "content": f"request {i} " + "hello " * (i % 7)}]

    if flavour == "tasks":

        async def main() -> None:
            router = sdk.AsyncRouter(endpoints, transport=transport, sleep=clock.asleep, **settings)
            for name in "abc":  # tokenizers fetched before the clock starts
                await router.pin(f"{name}.test").tokenizer(MODEL)

            async def one(i: int) -> None:
                try:
                    reply = await router.chat.completions.create(
                        model=MODEL, messages=messages(i), max_tokens=MAX_TOKENS
                    )
                    served.append(reply.response_info.endpoint)
                finally:
                    clock.done()

            await asyncio.gather(*(one(i) for i in range(CALLS)))

        asyncio.run(main())
    else:
        router = sdk.Router(endpoints, transport=transport, sleep=clock.sleep, **settings)
        for name in "abc":
            router.pin(f"{name}.test").tokenizer(MODEL)

        def one(i: int) -> None:
            try:
                reply = router.chat.completions.create(
                    model=MODEL, messages=messages(i), max_tokens=MAX_TOKENS
                )
                served.append(reply.response_info.endpoint)
            finally:
                clock.done()

        threads = [threading.Thread(target=one, args=(i,)) for i in range(CALLS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert len(served) == CALLS
    check_windows(hosts)
    assert len(hosts.sent["a"]) > 3  # a came back after its 429s
    # 63 requests (3 of them refused) at 18 a minute: the fourth minute starts at 180 s, and
    # no call waited for one endpoint while another had room
    assert clock.now == 180.0


def test_a_tokenizer_comes_from_the_first_endpoint_that_answers(api: Api) -> None:
    hosts = Hosts({"a": FakeServer(), "b": FakeServer(*toy_export(context_length=99))})

    def refuse_a(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.test":
            raise httpx.ConnectError("refused", request=request)
        return hosts(request)

    router = api.router(refuse_a, [hosts.url("a"), hosts.url("b")])
    assert api.run(lambda r: r.tokenizer(MODEL), router).context_length == 99
    assert router.endpoint_status()[0].failures == 1
    with pytest.raises(sdk.APIConnectionError):  # nowhere else to ask
        api.run(lambda r: r.pin("a.test").count_tokens(MODEL, prompt="hi"), router)
