"""Our SDK (``Client`` and ``AsyncClient``) against a real ``server_ref`` process.

The unit tests drive the SDK over ``httpx.MockTransport``; here the bytes come from uvicorn
and the engine, so what is checked is that both sides honour the same wire contract: typed
results, usage, request ids, streams and their accumulation, connections closed mid-stream
(the server must abort the request), and every error status mapped to its exception class.

The tiny model has random weights, so its text is noise; ``ignore_eos`` (a server extension,
sent as ``extra_body``) keeps lengths exact where a test counts tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from kit.live_clients import RUNNING, WAITING, finished_count, wait_for_metrics
from kit.live_server import LiveServer, free_port
from kit.tinybert import NAME as TINY_EMBEDDING

import sdk
from sdk.types import ChatCompletion, ChatCompletionChunk, Completion, ModelList

T = TypeVar("T")
Client = sdk.Client | sdk.AsyncClient
ServerFactory = Callable[..., contextlib.AbstractContextManager[LiveServer]]

MODES = ("sync", "async")
KINDS = ("chat", "completion")
PROMPT = "The quick brown fox jumps over the lazy dog"
NO_EOS = {"ignore_eos": True}
LONG = {"max_tokens": 400, "temperature": 0, "extra_body": NO_EOS}  # runs until aborted
API_KEY = "sk-test-live-key"


# --- one test body for both clients ---------------------------------------------------------


def make_client(mode: str, base_url: str, **kwargs: Any) -> Client:
    kwargs.setdefault("max_retries", 0)  # a retried 429 or 500 would hide the server's answer
    kwargs.setdefault("timeout", 60.0)
    cls = sdk.Client if mode == "sync" else sdk.AsyncClient
    return cls(base_url=f"{base_url}/v1", **kwargs)


async def close_client(client: Client) -> None:
    await resolve(client.close())


async def resolve(value: Awaitable[T] | T) -> T:
    """A sync client's result as is, an async client's awaited (a sync call blocks the loop,
    which is fine: the server is another process)."""
    if inspect.isawaitable(value):
        return await value
    return value


async def chunks_of(stream: Any) -> list[Any]:
    if isinstance(stream, sdk.AsyncStream):
        async with stream:
            return [chunk async for chunk in stream]
    with stream:
        return list(stream)


async def texts_of(stream: Any) -> list[str]:
    if isinstance(stream, sdk.AsyncStream):
        return [text async for text in stream.text_stream]
    return list(stream.text_stream)


async def take(stream: Any, count: int) -> list[Any]:
    """The next ``count`` chunks, leaving the stream open."""
    if isinstance(stream, sdk.AsyncStream):
        return [await anext(stream) for _ in range(count)]
    return [next(stream) for _ in range(count)]


def create(client: Client, kind: str, model: str, prompt: str = PROMPT, **kwargs: Any) -> Any:
    """``chat.completions.create`` or ``completions.create`` (unawaited for ``AsyncClient``)."""
    if kind == "chat":
        messages = [{"role": "user", "content": prompt}]
        return client.chat.completions.create(model=model, messages=messages, **kwargs)
    return client.completions.create(model=model, prompt=prompt, **kwargs)


def text_of(result: ChatCompletion | Completion) -> str:
    choice = result.choices[0]
    text = choice.message.content if isinstance(choice, sdk.types.Choice) else choice.text
    return text or ""


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def client(mode: str, base_url: str) -> AsyncIterator[Client]:
    client = make_client(mode, base_url)
    yield client
    await close_client(client)


# --- results ------------------------------------------------------------------------------


async def test_models_list(client: Client, model_id: str) -> None:
    models = await resolve(client.models.list())
    assert isinstance(models, ModelList)
    assert [m.id for m in models.data] == [model_id, TINY_EMBEDDING]
    model = await resolve(client.models.retrieve(model_id))
    assert model.id == model_id


async def test_non_streaming_result_is_typed(client: Client, kind: str, model_id: str) -> None:
    result = await resolve(
        create(client, kind, model_id, max_tokens=6, temperature=0, extra_body=NO_EOS)
    )
    assert isinstance(result, ChatCompletion if kind == "chat" else Completion)
    assert result.model == model_id
    assert text_of(result)
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == 6
    assert result.usage.total_tokens == result.usage.prompt_tokens + 6
    info = result.response_info
    assert info is not None
    assert (info.status_code, info.retries_taken) == (200, 0)
    assert info.request_id  # assigned by the server's middleware
    assert info.headers["x-request-id"] == info.request_id


async def test_request_id_is_echoed(client: Client, model_id: str) -> None:
    result = await resolve(
        create(client, "chat", model_id, max_tokens=2, extra_headers={"x-request-id": "trace-42"})
    )
    assert result.response_info is not None
    assert result.response_info.request_id == "trace-42"


@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "usage"])
async def test_stream_equals_non_stream(
    client: Client, kind: str, model_id: str, include_usage: bool
) -> None:
    args: dict[str, Any] = {"max_tokens": 12, "temperature": 0, "extra_body": NO_EOS}
    whole = await resolve(create(client, kind, model_id, **args))
    if include_usage:
        args["stream_options"] = {"include_usage": True}
    stream = await resolve(create(client, kind, model_id, stream=True, **args))
    assert stream.response_info.request_id
    texts = await texts_of(stream)
    final = await resolve(stream.get_final_completion())

    assert isinstance(final, type(whole))
    assert "".join(texts) == text_of(final) == text_of(whole)
    assert final.choices[0].finish_reason == whole.choices[0].finish_reason == "length"
    assert final.response_info is not None
    assert final.response_info.request_id == stream.response_info.request_id
    if include_usage:
        assert final.usage == whole.usage
    else:
        assert final.usage is None


async def test_stream_chunks_are_typed(client: Client, model_id: str) -> None:
    stream = await resolve(
        create(
            client,
            "chat",
            model_id,
            stream=True,
            max_tokens=5,
            extra_body=NO_EOS,
            stream_options={"include_usage": True},
        )
    )
    chunks = await chunks_of(stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    *body, last = chunks
    assert body[0].choices[0].delta.role == "assistant"
    assert body[-1].choices[0].finish_reason == "length"
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == 5


async def test_twenty_concurrent_async_streams(
    base_url: str, model_id: str, http: httpx.AsyncClient
) -> None:
    async def one(client: sdk.AsyncClient, i: int) -> ChatCompletion:
        stream = await client.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": f"Stream number {i}: " + "go " * i}],
            max_tokens=16,
            temperature=0,
            extra_body=NO_EOS,
            stream=True,
        )
        return await stream.get_final_completion()

    async with sdk.AsyncClient(base_url=f"{base_url}/v1", max_retries=0) as client:
        finals = await asyncio.wait_for(
            asyncio.gather(*(one(client, i) for i in range(20))), timeout=120
        )
    assert [f.choices[0].finish_reason for f in finals] == ["length"] * 20
    assert all(f.choices[0].message.content for f in finals)
    assert len({f.id for f in finals}) == 20
    await wait_for_metrics(http, {RUNNING: 0.0, WAITING: 0.0}, within=5.0)


# --- streams that stop early -------------------------------------------------------------


async def _stop_sync_close(base_url: str, model: str) -> None:
    with sdk.Client(base_url=f"{base_url}/v1", max_retries=0) as client:
        stream = create(client, "chat", model, stream=True, **LONG)
        await take(stream, 3)
        stream.close()
        assert list(stream) == []  # closed: nothing more


async def _stop_sync_with(base_url: str, model: str) -> None:
    with (
        sdk.Client(base_url=f"{base_url}/v1", max_retries=0) as client,
        create(client, "completion", model, stream=True, **LONG) as stream,
    ):
        for i, _ in enumerate(stream):
            if i == 3:
                break


async def _stop_async_close(base_url: str, model: str) -> None:
    async with sdk.AsyncClient(base_url=f"{base_url}/v1", max_retries=0) as client:
        stream = await create(client, "chat", model, stream=True, **LONG)
        await take(stream, 3)
        await stream.close()


async def _stop_async_with(base_url: str, model: str) -> None:
    async with (
        sdk.AsyncClient(base_url=f"{base_url}/v1", max_retries=0) as client,
        await create(client, "completion", model, stream=True, **LONG) as stream,
    ):
        async for text in stream.text_stream:
            if text:
                break


async def _stop_async_cancel(base_url: str, model: str) -> None:
    started = asyncio.Event()

    async def consume(client: sdk.AsyncClient) -> None:
        stream = await create(client, "chat", model, stream=True, **LONG)
        async for _ in stream:  # no `async with`: cancellation alone must close it
            started.set()

    async with sdk.AsyncClient(base_url=f"{base_url}/v1", max_retries=0) as client:
        task = asyncio.create_task(consume(client))
        await asyncio.wait_for(started.wait(), timeout=60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


STOPPERS: dict[str, Callable[[str, str], Awaitable[None]]] = {
    "sync-close": _stop_sync_close,
    "sync-leave-with": _stop_sync_with,
    "async-close": _stop_async_close,
    "async-leave-with": _stop_async_with,
    "async-cancel-task": _stop_async_cancel,
}


@pytest.mark.parametrize("how", list(STOPPERS))
async def test_stream_stopped_early_is_aborted_on_the_server(
    how: str, base_url: str, model_id: str, http: httpx.AsyncClient
) -> None:
    aborted = await finished_count(http, "abort")
    await STOPPERS[how](base_url, model_id)
    # The closed connection is the only signal the server gets; it must stop generating.
    await wait_for_metrics(http, {RUNNING: 0.0, WAITING: 0.0}, within=5.0)
    for _ in range(50):  # the counter is bumped as the engine reports the abort
        if await finished_count(http, "abort") == aborted + 1:
            break
        await asyncio.sleep(0.1)
    assert await finished_count(http, "abort") == aborted + 1


# --- errors from the live server ---------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_unknown_model_is_not_found(client: Client, kind: str, stream: bool) -> None:
    with pytest.raises(sdk.NotFoundError) as info:
        await resolve(create(client, kind, "no-such-model", max_tokens=2, stream=stream))
    error = info.value
    assert (error.status_code, error.code) == (404, "model_not_found")
    assert error.request_id
    with pytest.raises(sdk.NotFoundError):
        await resolve(client.models.retrieve("no-such-model"))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_context_overflow_is_bad_request(
    client: Client, kind: str, model_id: str, stream: bool
) -> None:
    with pytest.raises(sdk.BadRequestError) as info:
        await resolve(
            create(client, kind, model_id, "tick tock " * 600, max_tokens=4, stream=stream)
        )
    assert (info.value.status_code, info.value.code) == (400, "context_length_exceeded")
    assert info.value.type == "invalid_request_error"
    assert "context" in info.value.message


async def test_default_budget_refuses_locally_once_the_tokenizer_is_held(
    mode: str, base_url: str, kind: str, model_id: str
) -> None:
    sent: list[str] = []

    def record(request: httpx.Request) -> None:
        sent.append(f"{request.method} {request.url.path}")

    hooks = {"event_hooks": {"request": [record if mode == "sync" else _async(record)]}}
    http: Any = (httpx.Client if mode == "sync" else httpx.AsyncClient)(**hooks)
    client = make_client(mode, base_url, http_client=http)  # token_budget="auto"
    try:
        await resolve(client.tokenizer(model_id))  # the one GET that makes counts exact
        before = list(sent)
        with pytest.raises(sdk.ContextWindowExceededError) as info:
            await resolve(create(client, kind, model_id, "tick tock " * 600, max_tokens=4))
        assert sent == before  # refused locally: nothing went out
        assert info.value.exact
    finally:
        await close_client(client)
        await resolve(http.close() if mode == "sync" else http.aclose())


def _async(fn: Callable[[httpx.Request], None]) -> Callable[[httpx.Request], Awaitable[None]]:
    async def hook(request: httpx.Request) -> None:
        fn(request)

    return hook


@pytest.fixture(scope="module")
def auth_server(tiny_server_factory: ServerFactory) -> Iterator[LiveServer]:
    with tiny_server_factory("--api-key", API_KEY) as server:
        yield server


@pytest.mark.parametrize("key", [None, "sk-wrong"], ids=["no-key", "wrong-key"])
async def test_api_key_is_required(
    auth_server: LiveServer, mode: str, model_id: str, key: str | None, monkeypatch: Any
) -> None:
    monkeypatch.delenv("LLM_SDK_API_KEY", raising=False)
    client = make_client(mode, auth_server.base_url, api_key=key)
    try:
        with pytest.raises(sdk.AuthenticationError) as info:
            await resolve(client.models.list())
        assert info.value.status_code == 401
        assert API_KEY not in str(info.value) and (key is None or key not in str(info.value))
        good = client.with_options(api_key=API_KEY)
        models = await resolve(good.models.list())
        assert [m.id for m in models.data] == [model_id, TINY_EMBEDDING]
    finally:
        await close_client(client)


@pytest.fixture(scope="module")
def busy_server(tiny_server_factory: ServerFactory) -> Iterator[LiveServer]:
    """One running sequence and one waiting place: a third request is refused with 429."""
    with tiny_server_factory("--max-num-seqs", "1", "--max-queue", "1") as server:
        yield server


@contextlib.asynccontextmanager
async def server_full(base_url: str, model: str) -> AsyncIterator[None]:
    """Hold the one running slot (a started stream) and the one queue place (a stream waiting
    for its first event) for the duration of the block."""
    async with (
        sdk.AsyncClient(base_url=f"{base_url}/v1", max_retries=0) as client,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        for attempt in range(3):
            running = await create(client, "chat", model, stream=True, **LONG)
            waiting = asyncio.create_task(create(client, "completion", model, stream=True, **LONG))
            try:
                try:
                    await wait_for_metrics(http, {RUNNING: 1.0, WAITING: 1.0}, within=30.0)
                except AssertionError:
                    # on a loaded machine the tiny model may finish the first stream's 400
                    # tokens before the second request arrives: hold both again
                    if attempt == 2:
                        raise
                    continue
                yield
                return
            finally:
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiting
                await running.close()
                await wait_for_metrics(http, {RUNNING: 0.0, WAITING: 0.0}, within=30.0)


async def test_full_queue_is_rate_limited(
    busy_server: LiveServer, mode: str, model_id: str
) -> None:
    sleeps: list[float] = []

    def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def arecord(seconds: float) -> None:
        sleeps.append(seconds)

    base_url, model = busy_server.base_url, model_id  # the same tiny model file
    sleep = record if mode == "sync" else arecord
    client = make_client(mode, base_url, max_retries=2, sleep=sleep)
    try:
        async with server_full(base_url, model):
            with pytest.raises(sdk.RateLimitError) as info:
                await resolve(create(client, "chat", model, max_tokens=2))
    finally:
        await close_client(client)
    error = info.value
    assert error.status_code == 429
    assert error.retry_after is not None and error.retry_after >= 1.0
    # retried twice, each time waiting as long as the server's Retry-After asked
    assert sleeps == [error.retry_after, error.retry_after]


# --- nobody listening ----------------------------------------------------------------------


def counting_http(mode: str, sent: list[httpx.Request]) -> httpx.Client | httpx.AsyncClient:
    """An httpx client that records every request it is asked to send."""
    if mode == "sync":
        return httpx.Client(event_hooks={"request": [sent.append]})

    async def hook(request: httpx.Request) -> None:
        sent.append(request)

    return httpx.AsyncClient(event_hooks={"request": [hook]})


async def test_nothing_listening_is_connection_error(mode: str) -> None:
    client = make_client(mode, f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(sdk.APIConnectionError) as info:
            await resolve(client.models.list())
        assert not isinstance(info.value, sdk.APITimeoutError)
        assert isinstance(info.value.__cause__, httpx.ConnectError)
    finally:
        await close_client(client)


@pytest.mark.parametrize("call", ["models", "chat", "chat-stream"])
async def test_retries_against_a_server_that_is_down(mode: str, call: str) -> None:
    sent: list[httpx.Request] = []
    sleeps: list[float] = []

    def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def arecord(seconds: float) -> None:
        sleeps.append(seconds)

    http = counting_http(mode, sent)
    client: Client
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    if isinstance(http, httpx.Client):
        client = sdk.Client(base_url=base_url, http_client=http, max_retries=2, sleep=record)
    else:
        client = sdk.AsyncClient(base_url=base_url, http_client=http, max_retries=2, sleep=arecord)
    try:
        with pytest.raises(sdk.APIConnectionError):
            if call == "models":
                await resolve(client.models.list())
            else:
                await resolve(
                    create(client, "chat", "m", max_tokens=2, stream=call == "chat-stream")
                )
    finally:
        await resolve(http.close() if isinstance(http, httpx.Client) else http.aclose())
    assert len(sent) == 3  # the first attempt and two retries
    assert len(sleeps) == 2 and all(s > 0 for s in sleeps)
    assert [r.headers["x-retry-count"] for r in sent] == ["0", "1", "2"]
    keys = {r.headers.get("idempotency-key") for r in sent}
    assert len(keys) == 1  # every attempt of one call carries the same key (none for GET)
    assert (keys == {None}) == (call == "models")
