"""Bad input against the live server: every case is a 4xx in OpenAI's error shape, and the
server stays healthy through the whole matrix (uvicorn's own parsing included, which the
in-process unit tests never reach)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
USER = [{"role": "user", "content": "hi"}]
MB = 1024 * 1024


def chat(**fields: Any) -> bytes:
    return json.dumps({"messages": USER, "max_tokens": 4, **fields}).encode()


async def ten_mb_chunks() -> AsyncIterator[bytes]:
    """A body without Content-Length (chunked), so only the streaming check can stop it."""
    yield b'{"messages": [{"role": "user", "content": "'
    for _ in range(10):
        yield b"a" * MB
    yield b'"}]}'


@dataclass
class Case:
    id: str
    status: int
    body: Any = None  # bytes, or a function returning an async iterator of bytes
    path: str = CHAT
    method: str = "POST"
    param: str | None = None  # expected error.param, when the server can name it
    code: str | None = None  # expected error.code
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


CASES = [
    Case("malformed-json", 400, b'{"messages": [', param=None),
    Case("json-array", 400, b"[1, 2, 3]"),
    Case("empty-body", 400, b""),
    Case("invalid-utf8", 400, b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}'),
    Case("messages-missing", 400, b'{"max_tokens": 4}', param="messages"),
    Case("messages-empty", 400, chat(messages=[]), param="messages"),
    Case("messages-string", 400, chat(messages="hi"), param="messages"),
    Case(
        "unknown-role",
        400,
        chat(messages=[{"role": "wizard", "content": "hi"}]),
        param="messages[0].role",
    ),
    Case("content-number", 400, chat(messages=[{"role": "user", "content": 5}])),
    Case("max-tokens-string", 400, chat(max_tokens="4"), param="max_tokens"),
    Case("max-tokens-negative", 400, chat(max_tokens=-1), param="max_tokens"),
    Case("max-tokens-zero", 400, chat(max_tokens=0), param="max_tokens"),
    Case("max-tokens-huge", 400, chat(max_tokens=10**12), code="context_length_exceeded"),
    Case("max-tokens-2^70", 400, chat(max_tokens=2**70)),
    Case("temperature-nan", 400, chat()[:-1] + b', "temperature": NaN}', param="temperature"),
    Case("temperature-inf", 400, chat()[:-1] + b', "temperature": Infinity}', param="temperature"),
    Case("temperature-high", 400, chat(temperature=2.5), param="temperature"),
    Case("temperature-negative", 400, chat(temperature=-0.1), param="temperature"),
    Case("temperature-string", 400, chat(temperature="hot"), param="temperature"),
    Case("top-p-zero", 400, chat(top_p=0), param="top_p"),
    Case("top-p-high", 400, chat(top_p=1.5), param="top_p"),
    Case("top-p-nan", 400, chat()[:-1] + b', "top_p": NaN}', param="top_p"),
    Case("n-zero", 400, chat(n=0), param="n"),
    Case("n-huge", 400, chat(n=10**6), param="n"),
    Case("stop-empty-string", 400, chat(stop=[""]), param="stop"),
    Case("logprobs-string", 400, chat(logprobs="yes"), param="logprobs"),
    Case("top-logprobs-without-logprobs", 400, chat(top_logprobs=2), param="top_logprobs"),
    Case("logit-bias-out-of-vocab", 400, chat(logit_bias={"99999999": 5})),
    Case("logit-bias-not-an-id", 400, chat(logit_bias={"five": 5}), param="logit_bias"),
    Case("seed-too-big", 400, chat(seed=2**64), param="seed"),
    Case(
        "tool-choice-unknown-tool",
        400,
        chat(
            tools=[{"type": "function", "function": {"name": "f"}}],
            tool_choice={"type": "function", "function": {"name": "g"}},
        ),
        param="tool_choice",
    ),
    Case(
        "image-part",
        400,
        chat(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
                    ],
                }
            ]
        ),
        param="messages[0].content[0]",
    ),
    Case("body-10mb", 413, chat(messages=[{"role": "user", "content": "a" * 10 * MB}])),
    Case("body-10mb-chunked", 413, ten_mb_chunks),
    Case("prompt-empty-list", 400, b'{"prompt": [], "max_tokens": 4}', path=COMPLETIONS),
    Case("prompt-token-out-of-vocab", 400, b'{"prompt": [1, 99999999]}', path=COMPLETIONS),
    Case("prompt-missing", 400, b'{"max_tokens": 4}', path=COMPLETIONS, param="prompt"),
    Case("detokenize-negative-id", 400, b'{"tokens": [-1]}', path="/detokenize"),
    Case("unknown-route", 404, b"{}", path="/v1/nothing-here"),
    Case("wrong-method", 405, None, path=CHAT, method="GET"),
    Case("unknown-model", 404, chat(model="no-such-model"), param="model", code="model_not_found"),
]


def assert_openai_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    assert "Traceback" not in error["message"]
    return dict(error)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input_is_an_openai_error(http: httpx.AsyncClient, case: Case) -> None:
    body = case.body() if callable(case.body) else case.body
    r = await http.request(case.method, case.path, content=body, headers=case.headers)
    error = assert_openai_error(r, case.status)
    if case.param is not None:
        assert error["param"] == case.param
    if case.code is not None:
        assert error["code"] == case.code
    assert (await http.get("/health")).status_code == 200


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS])
async def test_prompt_longer_than_context(http: httpx.AsyncClient, path: str) -> None:
    text = "tick tock " * 400
    if path == CHAT:
        body: dict[str, Any] = {"messages": [{"role": "user", "content": text}]}
        counted = await http.post("/tokenize", json=body)
    else:
        body = {"prompt": text}
        counted = await http.post("/tokenize", json=body)
    info = counted.json()
    assert info["count"] > info["max_model_len"]
    error = assert_openai_error(await http.post(path, json=body), 400)
    assert error["code"] == "context_length_exceeded"
    assert str(info["max_model_len"]) in error["message"]
    assert str(info["count"]) in error["message"]


async def test_healthy_and_serving_after_the_matrix(http: httpx.AsyncClient) -> None:
    # runs after the cases above (pytest keeps file order)
    assert (await http.get("/health")).status_code == 200
    r = await http.post(CHAT, json={"messages": USER, "max_tokens": 3, "ignore_eos": True})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 3
