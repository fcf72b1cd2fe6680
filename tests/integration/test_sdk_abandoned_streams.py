"""Streams their owners give up on are closed by the SDK, so the server stops generating.

The common shape in web handlers: a task opens a stream without ``async with``, reads a
little, and is cancelled (its client went away) while awaiting something else; or a thread
drops its stream. Nothing is left running on the server, and asyncio prints no warnings.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from kit.live_clients import KV_USAGE, RUNNING, WAITING, wait_for_metrics
from kit.live_server import LiveServer, ServerFactory

import sdk

IDLE = {RUNNING: 0.0, WAITING: 0.0, KV_USAGE: 0.0}
LONG = {"max_tokens": 400, "temperature": 0, "extra_body": {"ignore_eos": True}}


@pytest.fixture(scope="module")
def roomy_server(tiny_server_factory: ServerFactory) -> Iterator[LiveServer]:
    # room for all 50 streams at once, so every one of them gets its first chunk quickly
    with tiny_server_factory("--max-num-seqs", "64") as server:
        yield server


@pytest.fixture
async def metrics(roomy_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=roomy_server.base_url, timeout=30.0) as client:
        yield client


def _messages(i: int) -> list[Any]:
    return [{"role": "user", "content": f"Story {i}: tell me a long story."}]


@pytest.mark.parametrize("kind", ["chat", "completion"])
async def test_cancelled_tasks_close_their_streams(
    roomy_server: LiveServer, metrics: httpx.AsyncClient, kind: str
) -> None:
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: problems.append(context))
    first_chunks = asyncio.Semaphore(0)

    async def handler(client: sdk.AsyncClient, i: int) -> None:
        if kind == "chat":
            stream: Any = await client.chat.completions.create(
                model="tiny", messages=_messages(i), stream=True, **LONG
            )
        else:
            stream = await client.completions.create(
                model="tiny", prompt=f"Story {i}:", stream=True, **LONG
            )
        async for _ in stream:  # no `async with`: the handler's shape in many web apps
            first_chunks.release()
            await asyncio.sleep(3600)  # awaiting something else when the cancel comes

    async with sdk.AsyncClient(base_url=f"{roomy_server.base_url}/v1", max_retries=0) as client:
        tasks = [asyncio.create_task(handler(client, i)) for i in range(50)]
        for _ in tasks:
            done, _ = await asyncio.wait(
                [asyncio.ensure_future(first_chunks.acquire())], timeout=60
            )
            failed = [t.exception() for t in tasks if t.done() and not t.cancelled()]
            assert done and not failed, failed
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # `tasks` still holds every task, and each cancelled task's traceback holds its
        # frame and so its stream: closing must not wait for the garbage collector
        await wait_for_metrics(metrics, IDLE, within=2.0)
        assert all(task.cancelled() for task in tasks)
    await asyncio.sleep(0.1)  # let any late callback report
    assert problems == []


@pytest.mark.parametrize("kind", ["chat", "completion"])
async def test_threads_that_drop_their_streams_close_them(
    roomy_server: LiveServer, metrics: httpx.AsyncClient, kind: str
) -> None:
    client = sdk.Client(base_url=f"{roomy_server.base_url}/v1", max_retries=0)
    read_one = threading.Barrier(21)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            if kind == "chat":
                stream: Any = client.chat.completions.create(
                    model="tiny", messages=_messages(i), stream=True, **LONG
                )
            else:
                stream = client.completions.create(
                    model="tiny", prompt=f"Story {i}:", stream=True, **LONG
                )
            next(iter(stream))
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            read_one.wait(timeout=60)
        # the thread ends here, dropping its half-read stream

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    await asyncio.to_thread(read_one.wait, 60)
    for thread in threads:
        await asyncio.to_thread(thread.join, 60)
    assert errors == []
    await wait_for_metrics(metrics, IDLE, within=2.0)
    gc.collect()
    client.close()


async def test_a_stream_never_iterated_is_closed_when_dropped(
    roomy_server: LiveServer, metrics: httpx.AsyncClient
) -> None:
    async with sdk.AsyncClient(base_url=f"{roomy_server.base_url}/v1", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="tiny", messages=_messages(0), stream=True, **LONG
        )
        del stream  # opened, never read, never closed
        await wait_for_metrics(metrics, IDLE, within=2.0)
    with sdk.Client(base_url=f"{roomy_server.base_url}/v1", max_retries=0) as sync_client:
        sync_stream = sync_client.chat.completions.create(
            model="tiny", messages=_messages(1), stream=True, **LONG
        )
        del sync_stream
        await wait_for_metrics(metrics, IDLE, within=2.0)
