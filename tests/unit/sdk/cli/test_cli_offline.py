"""``sdk.cli`` in-process against an ``httpx.MockTransport``: what is sent, what is printed.

The live-server versions (subprocess, real signals) are in tests/integration/test_sdk_cli.py.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import sdk
from sdk import cli
from sdk.cli import common
from sdk.cli.base import Command

MODEL = "m1"
Handler = Callable[[httpx.Request], httpx.Response]


def sse(*chunks: dict[str, Any]) -> bytes:
    events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    return ("".join(events) + "data: [DONE]\n\n").encode()


def chat_stream(text: str) -> httpx.Response:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
    return httpx.Response(
        200,
        headers={"content-type": "text/event-stream"},
        content=sse(
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ),
    )


def models_list() -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "data": [{"id": MODEL}, {"id": "m2"}]})


class Server:
    """A scripted server: ``routes`` maps "METHOD /path" to a response maker; requests are kept."""

    def __init__(self, routes: dict[str, Callable[[httpx.Request], httpx.Response]]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get(f"{request.method} {request.url.path}")
        if route is None:
            return httpx.Response(404, json={"error": {"message": "Not Found"}})
        return route(request)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.url.path == path]


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """``run(server, *argv, stdin="")`` -> (status, stdout, stderr), with no real network."""

    def runner(server: Handler, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        def client(args: Any) -> sdk.Client:
            return sdk.Client(
                base_url="http://llm.test/v1",
                transport=httpx.MockTransport(server),
                max_retries=0,
            )

        monkeypatch.setattr(common, "make_client", client)
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        status = cli.main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return runner


def test_chat_sends_the_history_and_reset_clears_it(run: Any) -> None:
    replies = iter(["Hi Ada.", "You are Ada.", "Who knows?"])
    server = Server(
        {
            "GET /v1/models": lambda r: models_list(),
            "POST /v1/chat/completions": lambda r: chat_stream(next(replies)),
        }
    )

    status, out, err = run(
        server,
        "chat",
        "--system",
        "Be brief.",
        "-t",
        "0",
        stdin="I am Ada.\n\nWho am I?\n/reset\nWho am I?\n/exit\nnever sent\n",
    )

    assert (status, out, err) == (0, "Hi Ada.\nYou are Ada.\nWho knows?\n", "")
    sent = [body["messages"] for body in server.bodies("/v1/chat/completions")]
    system = {"role": "system", "content": "Be brief."}
    assert sent == [
        [system, {"role": "user", "content": "I am Ada."}],
        [
            system,
            {"role": "user", "content": "I am Ada."},
            {"role": "assistant", "content": "Hi Ada."},
            {"role": "user", "content": "Who am I?"},
        ],
        [system, {"role": "user", "content": "Who am I?"}],
    ]
    bodies = server.bodies("/v1/chat/completions")
    assert {b["model"] for b in bodies} == {MODEL}  # the first listed model
    assert all(b["temperature"] == 0 and b["stream"] for b in bodies)
    assert all("stream_options" not in b for b in bodies)  # only asked for with --usage


def test_count_without_export_or_tokenize_is_a_labelled_estimate(run: Any) -> None:
    server = Server({"GET /v1/models": lambda r: models_list()})

    status, out, err = run(server, "count", stdin="Hello world, this is some text.")

    assert status == 0
    assert out.startswith("~") and "estimate" in out and MODEL in out
    assert err == ""  # the TokenCountWarning is said by the label, not printed


def test_count_falls_back_to_the_servers_tokenize(run: Any) -> None:
    server = Server(
        {
            "GET /v1/models": lambda r: models_list(),
            "POST /tokenize": lambda r: httpx.Response(200, json={"tokens": [1, 2, 3], "count": 3}),
        }
    )

    status, out, _ = run(server, "count", "--model", "m2", stdin="three tokens here")

    assert (status, out) == (0, "3 tokens (exact, counted by the server)\n")
    assert server.bodies("/tokenize") == [{"model": "m2", "prompt": "three tokens here"}]


@pytest.mark.parametrize(
    ("cards", "expected"),
    [
        ([{"id": "e", "capabilities": ["embeddings"]}, {"id": "c"}], "c"),
        ([{"id": "e", "capabilities": ["embeddings"]}, {"id": "c", "capabilities": ["chat"]}], "c"),
        ([{"id": "e", "capabilities": ["embeddings"]}], None),
    ],
    ids=["unlabelled", "labelled", "none"],
)
def test_the_default_model_is_the_first_that_chats(
    run: Any, cards: list[dict[str, Any]], expected: str | None
) -> None:
    server = Server(
        {
            "GET /v1/models": lambda r: httpx.Response(200, json={"data": cards}),
            "POST /v1/completions": lambda r: httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=sse()
            ),
        }
    )

    status, _, err = run(server, "complete", "Hi")

    if expected is None:
        assert (status, err) == (1, "error: the server lists no chat models; pass --model\n")
    else:
        assert status == 0 and server.bodies("/v1/completions")[0]["model"] == expected


def test_models_long_listing(run: Any) -> None:
    server = Server(
        {
            "GET /v1/models": lambda r: httpx.Response(
                200, json={"data": [{"id": "a", "max_model_len": 2048, "owned_by": "me"}]}
            )
        }
    )

    assert run(server, "models", "--long")[:2] == (0, "a\t2048\tme\n")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            httpx.Response(401, json={"error": {"message": "Invalid API key."}}),
            "error: http://llm.test/v1/models answered 401: Invalid API key. "
            "(pass --api-key or set LLM_SDK_API_KEY)",
        ),
        (
            httpx.Response(500, text="<html>\n<body>Oops</body>\n</html>"),
            "error: http://llm.test/v1/models answered 500: <html> <body>Oops</body> </html>",
        ),
    ],
    ids=["401", "500-html"],
)
def test_status_errors_are_one_line(run: Any, response: httpx.Response, expected: str) -> None:
    status, out, err = run(lambda r: response, "models")

    assert (status, out, err) == (1, "", expected + "\n")


def test_timeout_is_one_line(run: Any) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    status, _, err = run(slow, "models")

    assert status == 1
    assert err == "error: no answer from http://llm.test/v1/models in time (raise --timeout?)\n"


def test_an_error_event_mid_stream_is_one_line_in_scripted_chat(run: Any) -> None:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
    first = {**base, "choices": [{"index": 0, "delta": {"content": "Hal"}}]}
    error = {"error": {"message": "engine died", "type": "server_error", "code": 500}}
    body = [f"data: {json.dumps(first)}\n\n".encode(), f"data: {json.dumps(error)}\n\n".encode()]
    server = Server(
        {
            "GET /v1/models": lambda r: models_list(),
            "POST /v1/chat/completions": lambda r: httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=iter(body)
            ),
        }
    )

    status, out, err = run(server, "chat", stdin="Hi\nagain\n")

    assert status == 1  # a script must see the failure; the second line is never sent
    assert out.startswith("Hal")
    [line] = err.splitlines()
    assert line.startswith("error: ") and "engine died" in line
    assert len(server.bodies("/v1/chat/completions")) == 1


def test_a_bug_is_still_one_line(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: Any) -> int:
        raise KeyError("oops")

    commands = [
        c if c.name != "models" else Command("models", "", c.add_arguments, broken)
        for c in cli.COMMANDS
    ]
    monkeypatch.setattr(cli, "COMMANDS", commands)
    server = Server({})

    status, _, err = run(server, "models")

    assert status == 1
    assert err.startswith("error: internal error: KeyError") and err.count("\n") == 1


def completion_stream(*pieces: str) -> httpx.Response:
    base = {"id": "c", "object": "text_completion", "created": 0, "model": MODEL}
    chunks = [{**base, "choices": [{"index": 0, "text": p}]} for p in pieces]
    chunks.append({**base, "choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(*chunks))


@pytest.mark.parametrize(("flags", "sent"), [((), 128), (("--max-tokens", "5"), 5)])
def test_complete_streams_with_a_default_length(
    run: Any, flags: tuple[str, ...], sent: int
) -> None:
    server = Server(
        {
            "GET /v1/models": lambda r: models_list(),
            "POST /v1/completions": lambda r: completion_stream(" upon", " a time"),
        }
    )
    status, out, _ = run(server, "complete", "Once", *flags)
    assert status == 0 and out == " upon a time\n"
    [body] = server.bodies("/v1/completions")
    assert body["stream"] is True and body["max_tokens"] == sent
