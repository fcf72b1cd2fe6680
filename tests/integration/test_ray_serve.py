"""The server as a Ray Serve application (``serve --ray --replicas 2``) against one plain server,
with each router (``--router default``: Serve's proxy straight to the replicas; ``prefix``:
a front deployment forwarding to the replica the prefix-affinity router picks) behind each
ingress (``--ingress proxy``: Serve's HTTP proxy; ``haproxy``: HAProxy before replicas that
serve HTTP themselves).

Through Serve's proxy a client must get what one plain server gives it: the same greedy
answers and SSE bytes (apart from ids and timestamps), the same model list, the same error
statuses and bodies. A replica killed under load is restarted by Serve while the SDK's retries
hide the failure; streams cut by their clients free every replica's KV slots. With the prefix
router, every turn of a conversation runs on one replica, and the conversations spread.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

# tests/conftest.py set what Ray reads on import (loopback, token auth) before this import
pytest.importorskip("ray.serve", reason="needs the ray extra: pip install 'llm-sdk[ray]'")

import ray
from kit.four_clients import KINDS, FourClients
from kit.listening import listening
from kit.live_server import LiveServer, ServerFactory
from kit.ray_cluster import RayCluster

import sdk

pytestmark = pytest.mark.slow

REPLICAS = 2
RESTART_S = 120.0  # a replica loads torch and the tiny models again on a busy 2-core machine
MESSAGES = [{"role": "user", "content": "Tell me about foxes."}]
GREEDY = {"max_tokens": 12, "temperature": 0}


@pytest.fixture(scope="module", params=["proxy", "haproxy"])
def ingress(request: pytest.FixtureRequest) -> str:
    """What takes the HTTP connections: Serve's HTTP proxy, or HAProxy (``deploy.haproxy``)."""
    return str(request.param)


@pytest.fixture(scope="module", params=["default", "prefix"])
def router(request: pytest.FixtureRequest) -> str:
    """pytest runs every test with one application before it starts the next."""
    return str(request.param)


@pytest.fixture(scope="module")
def ray_server(
    tiny_server_factory: ServerFactory, router: str, ingress: str
) -> Iterator[LiveServer]:
    flags = ("--ray", "--replicas", str(REPLICAS), "--router", router, "--ingress", ingress)
    with tiny_server_factory(*flags) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(ray_server: LiveServer) -> Iterator[RayCluster]:
    cluster = RayCluster.of(ray_server)
    cluster.wait_replicas(REPLICAS, within=RESTART_S)
    yield cluster
    cluster.close()


async def test_turns_of_a_conversation_stay_on_one_replica(
    ray_server: LiveServer, cluster: RayCluster, model_id: str, router: str
) -> None:
    """Which replica served a call: the one whose prefix-cache lookups grew (calls run one at
    a time). Six conversations of three turns, their turns interleaved. First in the module:
    the router has indexed no text yet, so the new conversations alternate between the idle
    replicas (after other tests, the one with less text indexed would take them all)."""
    if router != "prefix":
        pytest.skip("Serve's power of two choices has no affinity")
    histories = [
        [{"role": "user", "content": f"Conversation {n}: tell me about {animal}."}]
        for n, animal in enumerate(["foxes", "owls", "bees", "cats", "moles", "crows"])
    ]
    served: dict[int, list[str]] = {n: [] for n in range(len(histories))}
    hits: dict[int, list[int]] = {n: [] for n in range(len(histories))}
    async with httpx.AsyncClient(base_url=ray_server.base_url, timeout=60) as http:
        for _turn in range(3):
            for n, messages in enumerate(histories):
                before = await asyncio.to_thread(cluster.engine_loads)
                body = {"model": model_id, "messages": messages, **GREEDY}
                r = await http.post("/v1/chat/completions", json=body)
                assert r.status_code == 200, r.text
                after = await asyncio.to_thread(cluster.engine_loads)
                [(name, delta)] = [
                    (k, {f: after[k][f] - before[k][f] for f in after[k] if f.startswith("prefix")})
                    for k in after
                    if after[k]["prefix_cache_queries"] != before[k]["prefix_cache_queries"]
                ]
                served[n].append(name)
                hits[n].append(delta["prefix_cache_hits"])
                reply = r.json()["choices"][0]["message"]["content"]
                messages += [
                    {"role": "assistant", "content": reply},
                    {"role": "user", "content": "And then?"},
                ]
    assert all(len(set(names)) == 1 for names in served.values()), served
    assert len({names[0] for names in served.values()}) == REPLICAS, served  # they spread
    # the later turns found their conversation's earlier turns in that replica's cache
    assert all(h[1] > 0 and h[2] > h[1] for h in hits.values()), hits


def _same_sse(text: str) -> str:
    """The SSE body without what differs per response: ids and timestamps."""
    text = re.sub(r'"id":"[^"]*"', '"id":"-"', text)
    return re.sub(r'"created":\d+', '"created":0', text)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_same_bytes_as_one_server(
    tiny_server: LiveServer, ray_server: LiveServer, model_id: str, path: str, stream: bool
) -> None:
    body: dict[str, Any] = {"model": model_id, "stream": stream, **GREEDY}
    body |= {"messages": MESSAGES} if "chat" in path else {"prompt": "The quick brown fox"}
    answers = []
    for server in (tiny_server, ray_server):
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            r = await http.post(path, json=body)
        answers.append((r.status_code, r.headers["content-type"], _same_sse(r.text)))
    assert answers[0] == answers[1]


def test_nothing_listens_beyond_loopback(ray_server: LiveServer, cluster: RayCluster) -> None:
    """Every socket that the server, its Ray instance and the replicas listen on is on the
    loopback address (a replica's own gRPC server too: ``deploy.ray_loopback``)."""
    listeners = listening(ray_server.process.pid)
    names = {listener.name for listener in listeners}
    assert any(name.startswith("ray::ServeRepli") for name in names), names  # replicas seen
    assert [listener for listener in listeners if not listener.loopback] == []


async def test_one_kept_alive_connection_serves_call_after_call(
    ray_server: LiveServer, model_id: str
) -> None:
    body = {"model": model_id, "messages": MESSAGES, **GREEDY}
    async with httpx.AsyncClient(base_url=ray_server.base_url, timeout=60) as http:
        for _ in range(3):
            assert (await http.get("/v1/models")).status_code == 200
            assert (await http.post("/v1/chat/completions", json=body)).status_code == 200
            r = await http.post("/v1/chat/completions", json={**body, "stream": True})
            assert r.text.endswith("data: [DONE]\n\n")


async def test_same_answers_for_every_client(
    tiny_server: LiveServer, ray_server: LiveServer, model_id: str
) -> None:
    kwargs = {"model": model_id, "messages": MESSAGES, **GREEDY}
    results = []
    for server in (tiny_server, ray_server):
        clients = FourClients(server.base_url)
        replies = await clients.each(lambda c: c.chat.completions.create(**kwargs))
        streamed = {k: await clients.run(k, _streamed_text(k, kwargs)) for k in KINDS}
        await clients.close()
        results.append({k: (replies[k].choices[0].message.content, streamed[k]) for k in KINDS})
    assert results[0] == results[1]
    # and every client, streaming or not, got the same text
    assert len({text for pair in results[0].values() for text in pair}) == 1


def _streamed_text(kind: str, kwargs: dict[str, Any]) -> Any:
    """A call that streams (openai's client or ours) and joins the text deltas."""

    def sync(client: Any) -> str:
        stream = client.chat.completions.create(stream=True, **kwargs)
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    async def async_(client: Any) -> str:
        stream = await client.chat.completions.create(stream=True, **kwargs)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    return sync if kind.endswith("-sync") else async_


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("GET", "/v1/models", None),
        ("POST", "/v1/chat/completions", b"{not json"),
        (
            "POST",
            "/v1/chat/completions",
            b'{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}',
        ),
        ("POST", "/v1/completions", b'{"model": "MODEL", "prompt": "' + b"fox " * 600 + b'"}'),
    ],
    ids=["models", "bad-json", "unknown-model", "over-long-prompt"],
)
async def test_same_status_and_body(
    tiny_server: LiveServer,
    ray_server: LiveServer,
    model_id: str,
    method: str,
    path: str,
    content: bytes | None,
) -> None:
    if content is not None:
        content = content.replace(b"MODEL", model_id.encode())
    answers = []
    for server in (tiny_server, ray_server):
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            r = await http.request(
                method, path, content=content, headers={"content-type": "application/json"}
            )
        answers.append((r.status_code, _same_sse(r.text), r.headers.get_list("x-request-id")))
    (plain_status, plain_body, _), (status, body, request_ids) = answers
    assert (status, body) == (plain_status, plain_body)
    assert len(request_ids) == 1  # Serve's proxy sends it; the replica's copy is dropped


async def test_a_killed_replica_is_hidden_by_retries_and_comes_back(
    ray_server: LiveServer, cluster: RayCluster, model_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """200 mixed calls through the SDK while the busiest replica's actor is killed, with
    streams running on it: every call succeeds with the answer it would have had. Calls the
    kill fails before their first token are retried (one idempotency key); the greedy streams
    it cuts after their first tokens are resumed on the other replica, the chunks already
    delivered checked and skipped."""
    short = {"model": model_id, "temperature": 0, "max_tokens": 8}
    long = {"model": model_id, "temperature": 0, "max_tokens": 64, "ignore_eos": True}
    prompts = [[{"role": "user", "content": f"Question {i % 5}"}] for i in range(200)]
    client = sdk.AsyncClient(base_url=f"{ray_server.base_url}/v1", max_retries=8, timeout=60)

    async def answer(i: int) -> str:
        if i % 2:  # a short call, not streamed
            reply = await client.chat.completions.create(messages=prompts[i], **short)
            return reply.choices[0].message.content or ""
        stream = await client.chat.completions.create(messages=prompts[i], stream=True, **long)
        parts = []
        async for chunk in stream:
            parts.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
            streaming.add(i)
        streaming.discard(i)
        return "".join(parts)

    streaming: set[int] = set()  # streams that have delivered chunks and not ended
    expected = {i: await answer(i) for i in range(10)}
    done = 0
    gate = asyncio.Semaphore(8)

    async def call(i: int) -> None:
        nonlocal done
        async with gate:
            assert await answer(i) == expected[i % 10]
            done += 1

    async def kill_the_busiest() -> None:
        while done < 40 or len(streaming) < 2:
            await asyncio.sleep(0.01)
        loads = await asyncio.to_thread(cluster.engine_loads)
        busiest = max(loads, key=lambda name: loads[name]["running"])
        ray.kill(cluster.replicas()[busiest], no_restart=True)

    with caplog.at_level(logging.INFO, logger="sdk"):
        results = await asyncio.gather(
            kill_the_busiest(), *(call(i) for i in range(200)), return_exceptions=True
        )
    await client.close()
    failed = [r for r in results if isinstance(r, BaseException)]
    assert not failed, failed[:3]
    resumed = sum("resuming a stream" in r.getMessage() for r in caplog.records)
    print(f"200 calls whole; {resumed} streams resumed after the kill cut them")
    assert resumed >= 1  # the kill did cut streams mid-way, and nobody saw it
    await asyncio.to_thread(cluster.wait_replicas, REPLICAS, within=RESTART_S)


async def test_cut_streams_free_every_replicas_kv_slots(
    ray_server: LiveServer, cluster: RayCluster, model_id: str
) -> None:
    body = {
        "model": model_id,
        "prompt": "Once upon a time",
        "stream": True,
        "max_tokens": 400,
        "ignore_eos": True,
    }

    async def cut_after_first_tokens(http: httpx.AsyncClient) -> None:
        async with http.stream("POST", "/v1/completions", json=body) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    return  # closes the connection with the stream running

    async with httpx.AsyncClient(base_url=ray_server.base_url, timeout=60) as http:
        await asyncio.gather(*(cut_after_first_tokens(http) for _ in range(20)))
    loads: dict[str, Any] = {}
    for _ in range(120):
        loads = await asyncio.to_thread(cluster.engine_loads)
        if len(loads) == REPLICAS and all(
            s["running"] == s["waiting"] == s["kv_blocks_used"] == 0 for s in loads.values()
        ):
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"KV slots still held 30 s after the cuts: {loads}")
