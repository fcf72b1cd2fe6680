"""Every way a request can go wrong gets the right status and OpenAI's error shape."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from kit.fake_engine import CHAT, FakeEngine, sse_events

from sdk.types import ErrorResponse
from server_ref.api import create_app
from server_ref.engine.types import EngineDeadError


def assert_error(r: httpx.Response, status: int, *, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    ErrorResponse.model_validate(body)
    assert body["error"]["message"]
    assert "Traceback" not in body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return dict(body["error"])


def chat(**fields: Any) -> dict[str, Any]:
    return {**CHAT, **fields}


TOOL = {"type": "function", "function": {"name": "f"}}
TOOL_CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


# (name, path, body, field named in the message or None)
BAD_JSON_BODIES: list[tuple[str, str, Any, str | None]] = [
    ("messages missing", "/v1/chat/completions", {"model": "fake-model"}, "messages"),
    ("messages empty", "/v1/chat/completions", chat(messages=[]), "messages"),
    ("messages not a list", "/v1/chat/completions", chat(messages="hi"), "messages"),
    ("unknown role", "/v1/chat/completions", chat(messages=[{"role": "bot", "content": "x"}]),
     "messages[0].role"),
    ("message without role", "/v1/chat/completions", chat(messages=[{"content": "x"}]),
     "messages[0].role"),
    ("image content part", "/v1/chat/completions",
     chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
     "messages[0].content"),
    ("max_tokens negative", "/v1/chat/completions", chat(max_tokens=-1), "max_tokens"),
    ("max_tokens zero", "/v1/chat/completions", chat(max_tokens=0), "max_tokens"),
    ("max_tokens string", "/v1/chat/completions", chat(max_tokens="10"), "max_tokens"),
    ("max_tokens float", "/v1/chat/completions", chat(max_tokens=1.5), "max_tokens"),
    ("max_completion_tokens negative", "/v1/chat/completions",
     chat(max_completion_tokens=-5), "max_completion_tokens"),
    ("temperature too high", "/v1/chat/completions", chat(temperature=2.5), "temperature"),
    ("temperature negative", "/v1/chat/completions", chat(temperature=-0.1), "temperature"),
    ("temperature string", "/v1/chat/completions", chat(temperature="hot"), "temperature"),
    ("top_p zero", "/v1/chat/completions", chat(top_p=0), "top_p"),
    ("top_p above one", "/v1/chat/completions", chat(top_p=1.01), "top_p"),
    ("top_k below -1", "/v1/chat/completions", chat(top_k=-2), "top_k"),
    ("min_p above one", "/v1/chat/completions", chat(min_p=2), "min_p"),
    ("presence_penalty", "/v1/chat/completions", chat(presence_penalty=3), "presence_penalty"),
    ("frequency_penalty", "/v1/chat/completions", chat(frequency_penalty=-3),
     "frequency_penalty"),
    ("n zero", "/v1/chat/completions", chat(n=0), "n"),
    ("n huge", "/v1/chat/completions", chat(n=100000), "n"),
    ("stream not bool", "/v1/chat/completions", chat(stream="yes"), "stream"),
    ("stop empty string", "/v1/chat/completions", chat(stop=""), "stop"),
    ("stop wrong type", "/v1/chat/completions", chat(stop=5), "stop"),
    ("logit_bias key", "/v1/chat/completions", chat(logit_bias={"abc": 1}), "logit_bias"),
    ("logit_bias negative key", "/v1/chat/completions", chat(logit_bias={"-1": 1}), "logit_bias"),
    ("logit_bias value", "/v1/chat/completions", chat(logit_bias={"1": 500}), "logit_bias"),
    ("top_logprobs range", "/v1/chat/completions", chat(logprobs=True, top_logprobs=21),
     "top_logprobs"),
    ("top_logprobs without logprobs", "/v1/chat/completions", chat(top_logprobs=2),
     "top_logprobs"),
    ("logprobs not bool", "/v1/chat/completions", chat(logprobs=3), "logprobs"),
    ("legacy functions", "/v1/chat/completions", chat(functions=[{"name": "f"}]), "functions"),
    ("tool without a name", "/v1/chat/completions",
     chat(tools=[{"type": "function", "function": {}}]), "tools[0].function.name"),
    ("json_schema without a schema", "/v1/chat/completions",
     chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}}),
     "response_format.json_schema.schema"),
    ("seed float", "/v1/chat/completions", chat(seed=1.5), "seed"),
    ("stream_options wrong type", "/v1/chat/completions", chat(stream_options=True),
     "stream_options"),
    ("prompt missing", "/v1/completions", {"max_tokens": 3}, "prompt"),
    ("prompt empty string", "/v1/completions", {"prompt": ""}, "prompt"),
    ("prompt empty list", "/v1/completions", {"prompt": []}, "prompt"),
    ("prompt mixed list", "/v1/completions", {"prompt": ["a", 1]}, "prompt"),
    ("prompt empty token list", "/v1/completions", {"prompt": [[1], []]}, "prompt"),
    ("prompt token out of vocab", "/v1/completions", {"prompt": [1, 999]}, "prompt"),
    ("completion logprobs range", "/v1/completions", {"prompt": "a", "logprobs": 50},
     "logprobs"),
    ("suffix", "/v1/completions", {"prompt": "a", "suffix": "b"}, "suffix"),
    ("best_of", "/v1/completions", {"prompt": "a", "best_of": 3}, "best_of"),
    ("echo with logprobs", "/v1/completions", {"prompt": "a", "echo": True, "logprobs": 1},
     "echo"),
    ("tokenize neither", "/tokenize", {}, None),
    ("tokenize both", "/tokenize", {"prompt": "a", "messages": CHAT["messages"]}, None),
    ("detokenize strings", "/detokenize", {"tokens": ["a"]}, "tokens"),
    ("detokenize negative", "/detokenize", {"tokens": [-1]}, "tokens"),
    ("detokenize out of vocab", "/detokenize", {"tokens": [100000]}, "tokens"),
    # each refused as the OpenAPI document says (the fuzzer's findings)
    ("logit_bias out of vocab", "/v1/chat/completions", chat(logit_bias={"258": 1}),
     "logit_bias"),
    ("logit_bias leading zero", "/v1/chat/completions", chat(logit_bias={"07": 1}), "logit_bias"),
    ("best_of equal to n", "/v1/completions", {"prompt": "a", "n": 2, "best_of": 2}, "best_of"),
    ("best_of on chat", "/v1/chat/completions", chat(best_of=2), "best_of"),
    ("best_of true", "/v1/completions", {"prompt": "a", "best_of": True}, "best_of"),
    ("web search with defaults", "/v1/chat/completions", chat(web_search_options={}),
     "web_search_options"),
    ("tools on completions", "/v1/completions", {"prompt": "a", "tools": [TOOL]}, "tools"),
    ("response_format on completions", "/v1/completions",
     {"prompt": "a", "response_format": {"type": "json_object"}}, "response_format"),
    ("prompt_logprobs", "/v1/completions", {"prompt": "a", "prompt_logprobs": 1},
     "prompt_logprobs"),
    ("unknown part with text", "/v1/chat/completions",
     chat(messages=[{"role": "user", "content": [{"type": "input_text", "text": "x"}]}]),
     "messages[0].content"),
    ("custom tool call in history", "/v1/chat/completions",
     chat(messages=[{"role": "assistant", "tool_calls": [
         {"id": "c", "type": "custom", "custom": {"name": "f", "input": ""}}]}]),
     "messages[0].tool_calls[0].type"),
    ("tokenize empty messages", "/tokenize", {"messages": []}, "messages"),
]  # fmt: skip

# Values of unsupported fields that ask for nothing, and integers written as 2.0 (JSON
# Schema's integers include them): accepted, as the OpenAPI document says
ACCEPTED_BODIES: list[tuple[str, str, Any]] = [
    ("no tools", "/v1/chat/completions", chat(tools=[], tool_choice="none")),
    ("auto tool choice", "/v1/chat/completions", chat(tool_choice="auto", functions=[])),
    ("text format", "/v1/chat/completions", chat(response_format={"type": "text"})),
    ("text modality", "/v1/chat/completions", chat(modalities=["text"], audio=None)),
    ("empty history tool calls", "/v1/chat/completions",
     chat(messages=[{"role": "user", "content": "hi", "tool_calls": []}])),
    ("text parts", "/v1/chat/completions",
     chat(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}])),
    ("best_of 1 and no suffix", "/v1/completions", {"prompt": "a", "best_of": 1, "suffix": ""}),
    ("integral floats", "/v1/completions",
     {"prompt": [72.0, 105], "n": 2.0, "max_tokens": 3.0, "best_of": 1.0, "seed": 7.0}),
    ("token-id logit_bias", "/v1/chat/completions", chat(logit_bias={"0": 1, "257": -1})),
    ("tokenize without tools", "/tokenize", {"prompt": "a", "tools": [], "tool_choice": "none"}),
    ("detokenize integral floats", "/detokenize", {"tokens": [72.0, 105.0]}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "field"), [c[1:] for c in BAD_JSON_BODIES],
                         ids=[c[0] for c in BAD_JSON_BODIES])  # fmt: skip
async def test_bad_bodies_are_400_naming_the_field(
    client: httpx.AsyncClient, engine: FakeEngine, path: str, body: Any, field: str | None
) -> None:
    error = assert_error(await client.post(path, json=body), 400)
    assert error["type"] == "invalid_request_error"
    if field is not None:
        assert field in error["message"], error
    assert engine.requests == []


@pytest.mark.parametrize(("path", "body"), [c[1:] for c in ACCEPTED_BODIES],
                         ids=[c[0] for c in ACCEPTED_BODIES])  # fmt: skip
async def test_bodies_the_document_accepts_are_accepted(
    client: httpx.AsyncClient, path: str, body: Any
) -> None:
    r = await client.post(path, json=body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("content", "headers", "needle"),
    [
        (b'{"messages": [', {"content-type": "application/json"}, "not valid JSON"),
        (b"not json at all", {"content-type": "application/json"}, "not valid JSON"),
        (b"", {"content-type": "application/json"}, "empty"),
        (b"[1, 2]", {"content-type": "application/json"}, "JSON object"),
        (b'{"messages": "\xff\xfe"}', {"content-type": "application/json"}, "UTF-8"),
        (b'{"model": "x"}', {"content-type": "text/plain"}, "messages"),  # no JSON check on type
    ],
    ids=["truncated", "garbage", "empty", "array", "invalid-utf8", "text-plain"],
)
async def test_malformed_bodies(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str], needle: str
) -> None:
    r = await client.post("/v1/chat/completions", content=content, headers=headers)
    assert needle in assert_error(r, 400)["message"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("field", ["temperature", "top_p", "presence_penalty"])
async def test_nan_and_infinity_are_rejected(
    client: httpx.AsyncClient, field: str, value: str
) -> None:
    raw = json.dumps(CHAT)[:-1] + f', "{field}": {value}}}'
    r = await client.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert field in assert_error(r, 400)["message"]


async def test_context_length_exceeded(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    long_prompt = "x" * 300  # 300 tokens > 256 context
    r = await client.post("/v1/completions", json={"prompt": long_prompt})
    error = assert_error(r, 400, code="context_length_exceeded")
    assert "256" in error["message"] and "300" in error["message"]
    # prompt fits, prompt + max_tokens does not: both counts in the message
    r = await client.post("/v1/completions", json={"prompt": "x" * 100, "max_tokens": 200})
    error = assert_error(r, 400, code="context_length_exceeded")
    assert "300 tokens (100 in the prompt, 200 in the completion)" in error["message"]
    r = await client.post("/v1/chat/completions", json=chat(max_tokens=10**9))
    assert_error(r, 400, code="context_length_exceeded")
    # a prompt that fills the window exactly leaves no room: no silent truncation either
    r = await client.post("/v1/completions", json={"prompt": "x" * 256})
    assert_error(r, 400, code="context_length_exceeded")
    # one prompt of a batch too long: the whole request fails, nothing was submitted
    r = await client.post("/v1/completions", json={"prompt": ["ok", "x" * 300]})
    assert_error(r, 400, code="context_length_exceeded")
    assert engine.requests == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/chat/completions", chat(model="gpt-4")),
        ("POST", "/v1/completions", {"model": "gpt-4", "prompt": "a"}),
        ("POST", "/tokenize", {"model": "gpt-4", "prompt": "a"}),
        ("GET", "/v1/models/gpt-4", None),
    ],
)
async def test_unknown_model_404(
    client: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    r = await client.request(method, path, json=body)
    error = assert_error(r, 404, code="model_not_found")
    assert "gpt-4" in error["message"]


async def test_unknown_route_and_wrong_method(client: httpx.AsyncClient) -> None:
    error = assert_error(await client.get("/v1/nothing-here"), 404)
    assert "/v1/nothing-here" in error["message"]
    r = await client.get("/v1/chat/completions")
    assert_error(r, 405, code="method_not_allowed")
    assert "POST" in r.headers["allow"]
    assert_error(await client.delete("/v1/models"), 405)


async def test_body_too_large(engine: FakeEngine) -> None:
    app = create_app(engine, max_body_bytes=1024)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        big = chat(messages=[{"role": "user", "content": "x" * 2000}])
        assert_error(await c.post("/v1/chat/completions", json=big), 413, code="request_too_large")

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
            data = json.dumps(big).encode()
            for i in range(0, len(data), 100):
                yield data[i : i + 100]

        r = await c.post("/v1/chat/completions", content=chunked())
        assert "content-length" not in r.request.headers
        assert_error(r, 413, code="request_too_large")
        assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert engine.requests[0][0].startswith("chatcmpl-") and len(engine.requests) == 1


async def test_ten_megabyte_body_with_default_limit(client: httpx.AsyncClient) -> None:
    big = chat(messages=[{"role": "user", "content": "x" * (10 * 1024 * 1024)}])
    assert_error(await client.post("/v1/chat/completions", json=big), 413)


async def test_queue_full_is_429_with_retry_after(engine: FakeEngine) -> None:
    engine.queue_full = True
    for retry_after, expected in ((1.0, "3"), (10.0, "10")):  # engine hint 2.5 -> 3s
        app = create_app(engine, retry_after=retry_after)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
            for stream in (False, True):
                r = await c.post("/v1/chat/completions", json=chat(stream=stream))
                assert_error(r, 429, code="rate_limit_exceeded")
                assert r.headers["retry-after"] == expected


async def test_queue_full_on_second_choice_aborts_the_first(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    original = engine.add_request

    def flaky(rid: str, ids: list[int], params: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            engine.queue_full = True
        return original(rid, ids, params)

    monkeypatch.setattr(engine, "add_request", flaky)
    app = create_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        assert_error(await c.post("/v1/chat/completions", json=chat(n=2)), 429)
    assert engine.aborted == [engine.requests[0][0]]


@pytest.mark.parametrize("api_key_sent", [None, "wrong", "Bearer wrong", "Basic c2VjcmV0"])
async def test_auth_rejects_missing_or_wrong_key(
    engine: FakeEngine, api_key_sent: str | None
) -> None:
    app = create_app(engine, api_key="secret")
    headers = {}
    if api_key_sent is not None:
        headers["authorization"] = api_key_sent
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        for method, path in (
            ("GET", "/v1/models"),
            ("POST", "/v1/chat/completions"),
            ("POST", "/tokenize"),
            ("GET", "/v1/unknown"),
        ):
            r = await c.request(method, path, json=CHAT, headers=headers)
            error = assert_error(r, 401, code="invalid_api_key")
            assert error["type"] == "authentication_error"
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.headers["x-request-id"]
        # open paths
        assert (await c.get("/health", headers=headers)).status_code == 200
        assert (await c.get("/metrics", headers=headers)).status_code == 200
        assert (await c.get("/openapi.json", headers=headers)).status_code == 200
    assert engine.requests == []


async def test_auth_accepts_the_right_key(engine: FakeEngine) -> None:
    app = create_app(engine, api_key="secret")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        for auth in ("Bearer secret", "bearer secret"):
            r = await c.post("/v1/chat/completions", json=CHAT, headers={"authorization": auth})
            assert r.status_code == 200
        r = await c.get("/v1/unknown", headers={"authorization": "Bearer secret"})
        assert_error(r, 404)


# --- engine failures ---------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["error_after_steps", "raise_after_steps"])
async def test_engine_failure_before_any_output_is_500(engine: FakeEngine, failure: str) -> None:
    setattr(engine, failure, 1)
    app = create_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        r = await c.post("/v1/chat/completions", json=chat(n=2))
        error = assert_error(r, 500)
        assert error["type"] == "server_error"
        r = await c.post("/v1/completions", json={"prompt": "a"})
        assert_error(r, 500)
        metrics = (await c.get("/metrics")).text
    assert 'finished_reason="error"' in metrics or 'finished_reason="abort"' in metrics


@pytest.mark.parametrize("failure", ["error_after_steps", "raise_after_steps"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_engine_failure_mid_stream_is_an_error_event(
    engine: FakeEngine, failure: str, path: str
) -> None:
    setattr(engine, failure, 2)
    app = create_app(engine)
    body = chat(stream=True) if "chat" in path else {"prompt": "a", "stream": True}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        r = await c.post(path, json=body)
    assert r.status_code == 200  # the status line went out before the failure
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    error = events[-2]
    assert set(error) == {"error"}
    ErrorResponse.model_validate(error)
    assert error["error"]["type"] == "server_error"
    assert "Traceback" not in error["error"]["message"]
    assert any("choices" in e for e in events[:-2])  # some content made it out first


@pytest.mark.parametrize("failure", ["error_after_steps", "raise_after_steps"])
async def test_completion_stream_failing_before_any_output_is_a_plain_500(
    engine: FakeEngine, failure: str
) -> None:
    # Nothing was sent yet (completions have no role chunk), so the status can still say it.
    setattr(engine, failure, 0)
    app = create_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        r = await c.post("/v1/completions", json={"prompt": "a", "stream": True, "n": 2})
    assert_error(r, 500)
    assert engine.active == set()


async def test_engine_dropping_a_request_is_an_error(engine: FakeEngine) -> None:
    engine.finish_reason_override = "abort"
    app = create_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        assert_error(await c.post("/v1/chat/completions", json=CHAT), 503)


async def test_engine_rejecting_a_prompt_is_400(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def reject(*_: Any) -> Any:
        raise ValueError("prompt token ids must be in [0, 258)")

    monkeypatch.setattr(engine, "add_request", reject)
    app = create_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        error = assert_error(await c.post("/v1/chat/completions", json=CHAT), 400)
    assert "token ids" in error["message"]


async def test_dead_engine_at_submission_is_500(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dead(*_: Any) -> Any:
        raise EngineDeadError("engine failure: RuntimeError: device lost")

    monkeypatch.setattr(engine, "add_request", dead)
    app = create_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        for stream in (False, True):
            r = await c.post("/v1/chat/completions", json=chat(stream=stream))
            assert "not running" in assert_error(r, 500)["message"]


async def test_chat_template_refusal_is_400(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: Any, **__: Any) -> Any:
        raise ValueError("Conversation roles must alternate user/assistant")

    monkeypatch.setattr(engine.tokenizer, "render_chat", refuse)
    app = create_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        error = assert_error(await c.post("/v1/chat/completions", json=CHAT), 400)
    assert "alternate" in error["message"] and error["param"] == "messages"


async def test_invalid_content_length_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", content=b"{}", headers={"content-length": "abc"})
    assert "Content-Length" in assert_error(r, 400)["message"]


async def test_unexpected_exception_is_500_and_logged(
    engine: FakeEngine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(engine.tokenizer, "render_chat", boom)
    app: FastAPI = create_app(engine)
    with caplog.at_level(logging.INFO):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
            r = await c.post("/v1/chat/completions", json=CHAT)
    error = assert_error(r, 500)
    assert "secret internals" not in error["message"]
    assert r.headers["x-request-id"] in error["message"]
    assert any("secret internals" in (rec.exc_text or "") for rec in caplog.records)
    access = [rec.getMessage() for rec in caplog.records if rec.name == "server_ref.access"]
    assert access and " 500 " in access[-1]
