"""Our SDK against the official ``openai`` client: import time, client CPU, stream parsing.

Both clients run on the same machine against the same servers, one after the other:

a) cold import: the median over fresh interpreters of the time ``import sdk; sdk.Client``
   (``import openai; openai.OpenAI``) takes inside the process, the same for the bare
   ``import``, the whole process's wall time for the client line, and import + client +
   a first ``models.list()`` (our client loads pydantic and its models on the first call);
b) stream parsing: a tiny raw-socket server in a subprocess replays a canned stream of
   ``--chunks`` OpenAI-shaped chat chunks as fast as it can; each client consumes it
   (typed chunks, the way an application iterates) and we report chunks/s and CPU per chunk;
c) client CPU per non-streaming request: ``time.process_time()`` of this process over M
   sequential requests to a ``server_ref`` it launches on loopback (``GET /v1/models`` and a
   ``max_tokens=1`` chat), sync and async clients; the server runs in its own process, so
   only the client's work (building, sending, parsing, validating) is counted;
d) a real stream from ``server_ref`` (``--stream-tokens`` tokens, ``ignore_eos``): client CPU
   per chunk when chunks arrive one by one, as they do from a model.

Ratios are ours/openai: below 1 is better for times, above 1 for chunks/s. Goals: import at
most 1/3 of openai's, per-request CPU and chunk throughput no worse.

    python benchmarks/bench_sdk.py                       # default model, pulled on first use
    python benchmarks/bench_sdk.py --model path/to/model.gguf --parts import,stream
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "smollm2-135m-instruct"
PARTS = ("import", "requests", "stream", "live-stream")
MESSAGES = [{"role": "user", "content": "Say hello."}]
# One event loop for every async measurement: an async client's pooled connections belong to
# the loop that opened them.
RUNNER = asyncio.Runner()


# --- helpers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Row:
    """One measured quantity for both clients; ``lower_is_better`` picks how to read it."""

    name: str
    unit: str
    ours: float
    openai: float
    lower_is_better: bool = True

    @property
    def ratio(self) -> float:
        return self.ours / self.openai if self.openai else float("nan")


def print_rows(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    print(f"  {'':60s} {'ours':>9s} {'openai':>9s} {'ours/openai':>12s}")
    for r in rows:
        better = "lower" if r.lower_is_better else "higher"
        print(
            f"  {r.name + ' (' + r.unit + ')':60s} {r.ours:9.1f} {r.openai:9.1f} "
            f"{r.ratio:12.3f}  ({better} is better)"
        )


@contextlib.contextmanager
def process(
    cmd: list[str], *, ready: Callable[[subprocess.Popen[bytes]], None], pipe: bool = False
) -> Iterator[None]:
    """Run ``cmd`` for the block once ``ready(proc)`` returns; ``pipe``: read its stdout."""
    stdout = subprocess.PIPE if pipe else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=stdout, stderr=subprocess.DEVNULL)
    try:
        ready(proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- a) import time ----------------------------------------------------------------------

IMPORTS = {
    "import sdk / import openai": ("import sdk", "import openai"),
    "import + client class": ("import sdk; sdk.Client", "import openai; openai.OpenAI"),
}
# Our client loads pydantic and the wire models on its first call, not at import: this line
# (against the replay server's GET /v1/models) shows what a first request costs in total.
FIRST_CALL = {
    "import + Client() + first models.list()": (
        "import sdk; sdk.Client(base_url='{url}/v1', api_key='x').models.list()",
        "import openai; openai.OpenAI(base_url='{url}/v1', api_key='x').models.list()",
    ),
}


def time_import(statement: str) -> tuple[float, float]:
    """(seconds the statement took inside a fresh interpreter, the process's wall seconds)."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - start
    return float(out.stdout.strip()), wall


def bench_import(runs: int, url: str) -> list[Row]:
    lines = {
        **IMPORTS,
        **{k: (a.format(url=url), b.format(url=url)) for k, (a, b) in FIRST_CALL.items()},
    }
    statements = [s for pair in lines.values() for s in pair]
    for s in statements:  # compile .pyc files and warm the OS cache before measuring
        time_import(s)
    inside: dict[str, list[float]] = {s: [] for s in statements}
    walls: dict[str, list[float]] = {s: [] for s in statements}
    for _ in range(runs):  # interleaved, so a load spike hits every statement alike
        for s in statements:
            t, wall = time_import(s)
            inside[s].append(t)
            walls[s].append(wall)
    rows = [
        Row(name, "ms", 1e3 * statistics.median(inside[a]), 1e3 * statistics.median(inside[b]))
        for name, (a, b) in lines.items()
    ]
    a, b = IMPORTS["import + client class"]
    rows.append(
        Row(
            "process wall time, import + client class",
            "ms",
            1e3 * statistics.median(walls[a]),
            1e3 * statistics.median(walls[b]),
        )
    )
    return rows


# --- clients --------------------------------------------------------------------------------


def clients(base_url: str, is_async: bool) -> tuple[Any, Any]:
    """(ours, openai's) for ``base_url`` (no ``/v1``), no retries, same timeout."""
    import openai

    import sdk

    common: dict[str, Any] = {"base_url": f"{base_url}/v1", "max_retries": 0, "timeout": 120.0}
    if is_async:
        return sdk.AsyncClient(api_key="unused", **common), openai.AsyncOpenAI(
            api_key="unused", **common
        )
    return sdk.Client(api_key="unused", **common), openai.OpenAI(api_key="unused", **common)


async def close(client: Any) -> None:
    result = client.close()
    if asyncio.iscoroutine(result):
        await result


def cpu_and_wall(run: Callable[[], Any], is_async: bool) -> tuple[float, float]:
    """Process CPU seconds and wall seconds of ``run()`` (awaited in a fresh loop if async)."""
    if is_async:

        async def main() -> tuple[float, float]:
            cpu, wall = time.process_time(), time.perf_counter()
            await run()
            return time.process_time() - cpu, time.perf_counter() - wall

        return RUNNER.run(main())
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    return time.process_time() - cpu, time.perf_counter() - wall


def repeat(call: Callable[[], Any], count: int, is_async: bool) -> Callable[[], Any]:
    if is_async:

        async def arun() -> None:
            for _ in range(count):
                await call()

        return arun

    def run() -> None:
        for _ in range(count):
            call()

    return run


# --- c) per-request CPU --------------------------------------------------------------------


def launch_server_ref(
    model: str, device: str
) -> tuple[contextlib.AbstractContextManager[None], str]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "server_ref", "serve", "--model", model, "--device", device,
        "--host", "127.0.0.1", "--port", str(port), "--no-web", "--log-level", "warning",
    ]  # fmt: skip

    def ready(proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"server_ref exited with status {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise SystemExit("server_ref was not healthy after 600 s")

    return process(cmd, ready=ready), base_url


def bench_requests(
    base_url: str, model: str, count: int, chat_count: int, rounds: int
) -> list[Row]:
    rows = []
    for is_async in (False, True):
        ours, theirs = clients(base_url, is_async)
        flavour = "async" if is_async else "sync"
        calls: dict[str, tuple[int, Callable[[Any], Any]]] = {
            "GET /v1/models": (count, lambda c: c.models.list()),
            "chat max_tokens=1": (
                chat_count,
                lambda c: c.chat.completions.create(
                    model=model, messages=MESSAGES, max_tokens=1, temperature=0
                ),
            ),
        }
        for name, (n, call) in calls.items():
            cpu: dict[str, list[float]] = {"ours": [], "openai": []}
            for _ in range(rounds):
                for who, client in (("ours", ours), ("openai", theirs)):
                    one = functools.partial(call, client)
                    cpu_and_wall(repeat(one, 3, is_async), is_async)  # warm-up
                    spent, _ = cpu_and_wall(repeat(one, n, is_async), is_async)
                    cpu[who].append(spent / n)
            rows.append(
                Row(
                    f"{name}, {flavour}: client CPU",
                    "µs/request",
                    1e6 * statistics.median(cpu["ours"]),
                    1e6 * statistics.median(cpu["openai"]),
                )
            )
        RUNNER.run(_close_both(ours, theirs))
    return rows


async def _close_both(*clients_: Any) -> None:
    for client in clients_:
        await close(client)


# --- b) stream parsing against a replay server ----------------------------------------------


def canned_stream(chunks: int) -> bytes:
    """An HTTP/1.1 chunked body: ``chunks`` chat chunks, a usage chunk and ``[DONE]``."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000}
    base |= {"model": "bench", "system_fingerprint": None}
    events = []
    for i in range(chunks):
        delta: dict[str, Any] = {"content": f" word{i % 1000}"}
        if i == 0:
            delta["role"] = "assistant"
        finish = "length" if i == chunks - 1 else None
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        events.append({**base, "choices": [choice]})
    usage = {"prompt_tokens": 3, "completion_tokens": chunks, "total_tokens": chunks + 3}
    events.append({**base, "choices": [], "usage": usage})
    frames = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
    frames.append(b"data: [DONE]\n\n")
    body = b"".join(b"%x\r\n%s\r\n" % (len(f), f) for f in frames)
    return body + b"0\r\n\r\n"


HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\nx-request-id: bench\r\ntransfer-encoding: chunked\r\n\r\n"
)


MODELS = json.dumps({"object": "list", "data": [{"id": "bench", "object": "model"}]}).encode()
MODELS_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
    % (len(MODELS), MODELS)
)


async def replay_server(chunks: int) -> None:
    """Answer ``GET .../models`` with one model and every other request with the canned
    stream, on keep-alive connections."""
    body = HEAD + canned_stream(chunks)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                is_models = head.split(b" ", 2)[:2] == [b"GET", b"/v1/models"]
                writer.write(MODELS_RESPONSE if is_models else body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def launch_replay(chunks: int) -> tuple[contextlib.AbstractContextManager[None], list[str]]:
    url: list[str] = []

    def ready(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        url.append(f"http://127.0.0.1:{int(proc.stdout.readline())}")

    cmd = [sys.executable, __file__, "--replay-server", "--chunks", str(chunks)]
    return process(cmd, ready=ready, pipe=True), url


def consume(client: Any, is_async: bool, expect: int) -> Callable[[], Any]:
    """Iterate a whole stream as typed chunks, checking nothing was lost."""

    def check(count: int) -> None:
        if count != expect:
            raise SystemExit(f"{type(client).__module__}: got {count} chunks, expected {expect}")

    def create() -> Any:
        return client.chat.completions.create(
            model="bench", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )

    if is_async:

        async def arun() -> None:
            count = 0
            async for _ in await create():
                count += 1
            check(count)

        return arun

    def run() -> None:
        check(sum(1 for _ in create()))

    return run


def bench_stream(base_url: str, expect: int, rounds: int, label: str) -> list[Row]:
    rows = []
    for is_async in (False, True):
        ours, theirs = clients(base_url, is_async)
        flavour = "async" if is_async else "sync"
        cpu: dict[str, list[float]] = {"ours": [], "openai": []}
        wall: dict[str, list[float]] = {"ours": [], "openai": []}
        for round_ in range(rounds + 1):
            for who, client in (("ours", ours), ("openai", theirs)):
                spent, took = cpu_and_wall(consume(client, is_async, expect), is_async)
                if round_:  # the first round warms up (connections, lazy imports, schemas)
                    cpu[who].append(spent)
                    wall[who].append(took)
        rows.append(
            Row(
                f"{label}, {flavour}: throughput (wall)",
                "chunks/s",
                expect / statistics.median(wall["ours"]),
                expect / statistics.median(wall["openai"]),
                lower_is_better=False,
            )
        )
        rows.append(
            Row(
                f"{label}, {flavour}: client CPU",
                "µs/chunk",
                1e6 * statistics.median(cpu["ours"]) / expect,
                1e6 * statistics.median(cpu["openai"]) / expect,
            )
        )
        RUNNER.run(_close_both(ours, theirs))
    return rows


# --- d) a real model stream -----------------------------------------------------------------


def bench_live_stream(base_url: str, model: str, tokens: int) -> list[Row]:
    """Client CPU per chunk of a real generation (chunks arrive one per network read)."""
    ours, theirs = clients(base_url, False)
    cpu: dict[str, float] = {}
    for who, client in (("ours", ours), ("openai", theirs)):
        stream_args: dict[str, Any] = {
            "model": model,
            "messages": MESSAGES,
            "max_tokens": tokens,
            "temperature": 0,
            "stream": True,
            "extra_body": {"ignore_eos": True},
        }
        before = time.process_time()
        count = sum(1 for _ in client.chat.completions.create(**stream_args))
        cpu[who] = (time.process_time() - before) / count
    RUNNER.run(_close_both(ours, theirs))
    return [Row(f"server_ref stream ({tokens} tokens), sync: client CPU", "µs/chunk",
                1e6 * cpu["ours"], 1e6 * cpu["openai"])]  # fmt: skip


# --- main ------------------------------------------------------------------------------------


def machine() -> str:
    import openai
    import pydantic

    import sdk

    cpus = os.cpu_count()
    return (
        f"{platform.system()} {platform.machine()}, {cpus} CPUs, Python "
        f"{platform.python_version()}; sdk {sdk.__version__}, openai {openai.__version__}, "
        f"httpx {httpx.__version__}, pydantic {pydantic.__version__}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model name or .gguf path")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    ap.add_argument("--import-runs", type=int, default=15, help="fresh interpreters per line")
    ap.add_argument("--requests", type=int, default=200, help="GET /v1/models per client")
    ap.add_argument("--chat-requests", type=int, default=40, help="max_tokens=1 chats per client")
    ap.add_argument("--chunks", type=int, default=20_000, help="chunks in the replayed stream")
    ap.add_argument("--stream-tokens", type=int, default=256, help="tokens of the live stream")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians reported")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--replay-server", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.replay_server:
        RUNNER.run(replay_server(args.chunks))
        return
    parts = set(args.parts.split(","))
    if unknown := parts - set(PARTS):
        ap.error(f"unknown parts: {', '.join(sorted(unknown))}")

    print(f"machine: {machine()}")
    results: dict[str, list[Row]] = {}
    replay, urls = launch_replay(args.chunks)
    with replay:
        if "import" in parts:
            title = "a) cold import, median of fresh interpreters"
            results[title] = bench_import(args.import_runs, urls[0])
            print_rows(title, results[title])
        if "stream" in parts:
            title = f"b) replayed stream of {args.chunks} chunks"
            expect = args.chunks + 1  # and the usage chunk
            results[title] = bench_stream(urls[0], expect, args.rounds, "replay")
            print_rows(title, results[title])
    if parts & {"requests", "live-stream"}:
        server, base_url = launch_server_ref(args.model, args.device)
        with server:
            model = httpx.get(f"{base_url}/v1/models").json()["data"][0]["id"]
            if "requests" in parts:
                title = "c) client CPU per non-streaming request (server_ref on loopback)"
                results[title] = bench_requests(
                    base_url, model, args.requests, args.chat_requests, args.rounds
                )
                print_rows(title, results[title])
            if "live-stream" in parts and args.stream_tokens > 0:
                title = "d) client CPU per chunk of a real model stream"
                results[title] = bench_live_stream(base_url, model, args.stream_tokens)
                print_rows(title, results[title])
    if args.json is not None:
        rows = [{"part": t, **vars(r), "ratio": r.ratio} for t, rs in results.items() for r in rs]
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))


if __name__ == "__main__":
    with RUNNER:
        main()
