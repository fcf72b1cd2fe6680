"""The HTTP layer's happy paths against the fake engine: shapes, sampling mapping, streams."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from kit.fake_engine import CHAT, FakeEngine, sse_events

from sdk.types import ChatCompletion, ChatCompletionChunk, Completion, ModelList
from server_ref.api import create_app

# --- models ------------------------------------------------------------------------------


async def test_models_list_and_retrieve(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models")
    assert r.status_code == 200
    models = ModelList.model_validate(r.json())
    assert [m.id for m in models.data] == ["fake-model"]
    assert models.data[0].max_model_len == 256
    r = await client.get("/v1/models/fake-model")
    assert r.status_code == 200
    assert r.json()["id"] == "fake-model"
    assert r.json()["object"] == "model"


async def test_served_model_name_is_used_and_both_names_accepted(engine: FakeEngine) -> None:
    app = create_app(engine, served_model_name="org/alias")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        assert (await c.get("/v1/models")).json()["data"][0]["id"] == "org/alias"
        assert (await c.get("/v1/models/org/alias")).status_code == 200
        for name in ("org/alias", "fake-model"):
            r = await c.post("/v1/chat/completions", json={**CHAT, "model": name})
            assert r.status_code == 200
            assert r.json()["model"] == "org/alias"


# --- chat --------------------------------------------------------------------------------


async def test_chat_completion_shape_and_prompt(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    body = ChatCompletion.model_validate(r.json())
    assert body.id.startswith("chatcmpl-") and len(body.id) == len("chatcmpl-") + 32
    assert body.object == "chat.completion"
    assert body.model == "fake-model"
    assert body.created > 0
    [choice] = body.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello there, world!"
    assert choice.finish_reason == "stop"
    assert choice.logprobs is None
    prompt = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    [(_, prompt_ids, params)] = engine.requests
    assert prompt_ids == engine.tokenizer.encode(prompt)
    assert body.usage is not None
    assert body.usage.prompt_tokens == len(prompt_ids)
    assert body.usage.completion_tokens == len("Hello there, world!")
    assert body.usage.total_tokens == body.usage.prompt_tokens + body.usage.completion_tokens
    # default budget: what the context window leaves after the prompt
    assert params.max_tokens == 256 - len(prompt_ids)


async def test_chat_sampling_fields_reach_the_engine(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = {
        **CHAT,
        "temperature": 0,
        "top_p": 0.5,
        "top_k": 7,
        "min_p": 0.1,
        "seed": 11,
        "max_completion_tokens": 5,
        "stop": ["\n", "END"],
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logit_bias": {"72": -100, "10": 5},
        "stop_token_ids": [3],
        "ignore_eos": True,
        "n": 2,
        "unknown_extension": {"ignored": True},
    }
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    seeds = []
    for _, _, p in engine.requests:
        assert (p.temperature, p.top_p, p.top_k, p.min_p) == (0.0, 0.5, 7, 0.1)
        assert p.max_tokens == 5
        assert p.stop == ("\n", "END")
        assert (p.presence_penalty, p.frequency_penalty) == (0.5, -0.5)
        assert p.logit_bias == ((72, -100.0), (10, 5.0))
        assert p.stop_token_ids == (3,) and p.ignore_eos
        assert p.logprobs is None
        seeds.append(p.seed)
    assert seeds == [11, 12]  # seed + i per choice
    choices = r.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1]
    assert all(c["finish_reason"] == "length" for c in choices)


async def test_chat_defaults(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    await client.post("/v1/chat/completions", json={**CHAT, "stop": "x", "top_k": -1})
    [(_, _, p)] = engine.requests
    assert (p.temperature, p.top_p, p.top_k, p.seed, p.stop) == (1.0, 1.0, 0, None, ("x",))


async def test_chat_content_parts_and_max_tokens_alias(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    messages = [
        {"role": "system", "content": None},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    r = await client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 3})
    assert r.status_code == 200
    [(_, ids, p)] = engine.requests
    assert engine.tokenizer.decode(ids).startswith("<|im_start|>system\n<|im_end|>\n")
    assert "user\na\nb<|im_end|>" in engine.tokenizer.decode(ids)
    assert p.max_tokens == 3
    assert r.json()["choices"][0]["message"]["content"] == "Hel"


async def test_chat_logprobs(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    body = {**CHAT, "logprobs": True, "top_logprobs": 2, "max_tokens": 2}
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert engine.requests[0][2].logprobs == 2
    content = r.json()["choices"][0]["logprobs"]["content"]
    assert [c["token"] for c in content] == ["H", "e"]
    assert content[0]["bytes"] == [72]
    assert [t["token"] for t in content[0]["top_logprobs"]] == ["H", "A"]
    # logprobs=true alone: the chosen token only
    r = await client.post("/v1/chat/completions", json={**CHAT, "logprobs": True})
    assert r.json()["choices"][0]["logprobs"]["content"][0]["top_logprobs"] == []


def _role_and_content(events: list[object], index: int = 0) -> tuple[list[str], str, str]:
    roles, text, finish = [], "", ""
    for e in events:
        assert isinstance(e, dict)
        for c in e["choices"]:
            if c["index"] != index:
                continue
            if "role" in c["delta"]:
                roles.append(c["delta"]["role"])
            text += c["delta"].get("content", "")
            finish = c["finish_reason"] or finish
    return roles, text, finish


@pytest.mark.parametrize("include_usage", [False, True])
async def test_chat_stream(client: httpx.AsyncClient, include_usage: bool) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": include_usage}}
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.endswith("data: [DONE]\n\n")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["id"] == chunks[0]["id"]
        assert ("usage" in chunk) == include_usage
    first = chunks[0]["choices"][0]
    assert first["delta"] == {"role": "assistant", "content": ""}
    roles, text, finish = _role_and_content(chunks)
    assert roles == ["assistant"]
    assert text == "Hello there, world!"
    assert finish == "stop"
    content_chunks = [
        c for c in chunks[1:] if c["choices"] and "content" in c["choices"][0]["delta"]
    ]
    assert all(c["choices"][0]["delta"]["content"] for c in content_chunks)  # no empty deltas
    if include_usage:
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["completion_tokens"] == len("Hello there, world!")
        assert all(c["usage"] is None for c in chunks[:-1])
    else:
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["choices"][0]["delta"] == {}


async def test_chat_stream_n2_with_logprobs(client: httpx.AsyncClient) -> None:
    body = {**CHAT, "stream": True, "n": 2, "seed": 1, "logprobs": True, "top_logprobs": 1}
    r = await client.post("/v1/chat/completions", json=body)
    chunks = sse_events(r.text)[:-1]
    for index, seed in ((0, 1), (1, 2)):
        roles, text, finish = _role_and_content(chunks, index)
        assert roles == ["assistant"]
        assert text == f"Hello there, world! (seed {seed})"
        assert finish == "stop"
        tokens = [
            lp["token"]
            for c in chunks
            for ch in c["choices"]
            if ch["index"] == index and ch["logprobs"]
            for lp in ch["logprobs"]["content"]
        ]
        assert "".join(tokens) == text


async def test_stream_never_sends_empty_deltas_for_held_back_text(engine: FakeEngine) -> None:
    # One token per step over multi-byte characters: some steps produce no text at all.
    engine.reply, engine.step_tokens = "é€😀", 1
    app = create_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        body = {**CHAT, "stream": True, "logprobs": True}
        chunks = sse_events((await c.post("/v1/chat/completions", json=body)).text)[:-1]
    deltas = [ch["choices"][0]["delta"] for ch in chunks[1:]]
    assert [d["content"] for d in deltas if "content" in d] == ["é", "€", "😀"]
    # the held-back tokens' logprobs travel with the text they complete
    lps = [ch["choices"][0]["logprobs"] for ch in chunks[1:]]
    assert [len(lp["content"]) for lp in lps if lp] == [2, 3, 4]


# --- completions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "n_prompts"),
    [("Say", 1), (["Say", "Tell"], 2), ([83, 97, 121], 1), ([[83, 97], [84]], 2)],
)
async def test_completion_prompt_forms(
    client: httpx.AsyncClient, engine: FakeEngine, prompt: object, n_prompts: int
) -> None:
    r = await client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 4, "n": 2})
    assert r.status_code == 200, r.text
    body = Completion.model_validate(r.json())
    assert body.id.startswith("cmpl-")
    assert body.object == "text_completion"
    assert [c.index for c in body.choices] == list(range(2 * n_prompts))
    assert all(c.text == "Hell" and c.finish_reason == "length" for c in body.choices)
    prompts = [ids for _, ids, _ in engine.requests]
    assert len(prompts) == 2 * n_prompts
    assert body.usage is not None
    assert body.usage.prompt_tokens == sum(len(p) for p in prompts[::2])  # once per prompt
    assert body.usage.completion_tokens == 4 * 2 * n_prompts


async def test_completion_default_budget_echo_and_logprobs(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    r = await client.post("/v1/completions", json={"prompt": "Say", "echo": True, "stop": "!"})
    assert r.json()["choices"][0]["text"] == "SayHello there, wor"  # 16 tokens: the default
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert engine.requests[0][2].max_tokens == 16  # OpenAI's and vLLM's default
    long_prompt = "x" * (256 - 10)  # leaves room for 10: the default never causes a 400
    await client.post("/v1/completions", json={"prompt": long_prompt})
    assert engine.requests[1][2].max_tokens == 10
    body = {"prompt": "Say", "echo": True, "stop": "!", "max_tokens": 64}
    r = await client.post("/v1/completions", json=body)
    assert r.json()["choices"][0]["text"] == "SayHello there, world"
    r = await client.post("/v1/completions", json={"prompt": "Say", "max_tokens": 3, "logprobs": 2})
    lp = r.json()["choices"][0]["logprobs"]
    assert lp["tokens"] == ["H", "e", "l"]
    assert lp["token_logprobs"] == [-0.25] * 3
    assert lp["top_logprobs"][0] == {"H": -0.25, "A": -2.65}
    assert lp["text_offset"] == [0, 1, 2]


@pytest.mark.parametrize("include_usage", [False, True])
async def test_completion_stream(client: httpx.AsyncClient, include_usage: bool) -> None:
    body = {
        "prompt": ["a", "b"],
        "stream": True,
        "echo": True,
        "max_tokens": 5,
        "stream_options": {"include_usage": include_usage},
    }
    r = await client.post("/v1/completions", json=body)
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in chunks:
        Completion.model_validate(chunk)
        assert chunk["object"] == "text_completion"
        assert ("usage" in chunk) == include_usage
        for c in chunk["choices"]:
            texts[c["index"]] = texts.get(c["index"], "") + c["text"]
            if c["finish_reason"]:
                finishes[c["index"]] = c["finish_reason"]
    assert texts == {0: "aHello", 1: "bHello"}
    assert finishes == {0: "length", 1: "length"}
    if include_usage:
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"] == {
            "prompt_tokens": 2,
            "completion_tokens": 10,
            "total_tokens": 12,
        }


async def test_completion_stream_logprob_offsets(client: httpx.AsyncClient) -> None:
    body = {"prompt": "x", "stream": True, "max_tokens": 7, "logprobs": 0}
    chunks = sse_events((await client.post("/v1/completions", json=body)).text)[:-1]
    offsets = [
        o
        for ch in chunks
        for c in ch["choices"]
        if c["logprobs"]
        for o in c["logprobs"]["text_offset"]
    ]
    assert offsets == list(range(7))


# --- tokenize / detokenize ---------------------------------------------------------------


async def test_tokenize_prompt_and_messages(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    r = await client.post("/tokenize", json={"prompt": "hi<|im_end|>"})
    assert r.json() == {"tokens": [104, 105, 257], "count": 3, "max_model_len": 256}
    r = await client.post("/tokenize", json={"prompt": "<|im_end|>", "add_special_tokens": False})
    assert r.json()["count"] == len("<|im_end|>")
    r = await client.post("/tokenize", json={"messages": CHAT["messages"]})
    expected = engine.tokenizer.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert r.json()["tokens"] == expected
    r = await client.post(
        "/tokenize", json={"messages": CHAT["messages"], "add_generation_prompt": False}
    )
    assert r.json()["count"] == len(expected) - len(
        engine.tokenizer.encode("<|im_start|>assistant\n")
    )


async def test_detokenize(client: httpx.AsyncClient) -> None:
    r = await client.post("/detokenize", json={"tokens": [104, 105, 257]})
    assert r.status_code == 200
    assert r.json() == {"prompt": "hi<|im_end|>"}


# --- health, metrics, docs, request ids, logs, web --------------------------------------


async def test_health(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    assert (await client.get("/health")).status_code == 200
    engine.ready = False
    r = await client.get("/health")
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "service_unavailable_error"
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503
    assert engine.requests == []


async def test_metrics(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    await client.post("/v1/chat/completions", json=CHAT)
    await client.post("/v1/completions", json={"prompt": "ab", "max_tokens": 2})
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    label = 'model_name="fake-model"'
    assert f"server_ref:num_requests_running{{{label}}} 0.0" in text
    assert f"server_ref:num_requests_waiting{{{label}}} 0.0" in text
    assert f"server_ref:kv_cache_usage_perc{{{label}}} 0.25" in text
    assert f"server_ref:prefix_cache_queries_total{{{label}}} 0.0" in text
    assert f"server_ref:prefix_cache_hits_total{{{label}}} 0.0" in text
    prompt = len(engine.requests[0][1]) + 2
    assert f"server_ref:prompt_tokens_total{{{label}}} {float(prompt)}" in text
    assert f"server_ref:generation_tokens_total{{{label}}} {float(19 + 2)}" in text
    assert f'server_ref:request_success_total{{finished_reason="stop",{label}}} 1.0' in text
    assert f'server_ref:request_success_total{{finished_reason="length",{label}}} 1.0' in text
    for hist in ("time_to_first_token", "inter_token_latency", "e2e_request_latency"):
        assert f"server_ref:{hist}_seconds_count{{{label}}}" in text


async def test_two_apps_in_one_process_have_separate_metrics(engine: FakeEngine) -> None:
    first, second = create_app(engine), create_app(FakeEngine())
    for app in (first, second):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
            assert (await c.get("/metrics")).status_code == 200


async def test_openapi_and_docs(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    body = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[-1]
    schema = doc["components"]["schemas"][name]
    assert "messages" in schema["properties"]
    for path in ("/v1/completions", "/tokenize", "/detokenize", "/health", "/metrics"):
        assert path in doc["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_request_id_echoed_or_assigned_and_access_log(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="server_ref.access"):
        r = await client.get("/v1/models", headers={"x-request-id": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"
        r = await client.get("/nope")
        assigned = r.headers["x-request-id"]
        assert len(assigned) == 32
        r = await client.get("/v1/models", headers={"x-request-id": "bad id\twith spaces"})
        assert r.headers["x-request-id"] != "bad id\twith spaces"
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "server_ref.access"]
    assert len(lines) == 3
    assert lines[0].startswith("GET /v1/models 200 ") and lines[0].endswith("request_id=abc-123")
    assert lines[1].startswith("GET /nope 404 ") and assigned in lines[1]


async def test_web_page_mounted_only_when_present(engine: FakeEngine, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<title>chat</title>")
    for enable, expected in ((True, 200), (False, 404)):
        app = create_app(engine, web_dir=tmp_path, enable_web=enable)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
            r = await c.get("/")
            assert r.status_code == expected
            assert (await c.get("/v1/models")).status_code == 200
            r = await c.get("/missing.js")
            assert r.status_code == 404 and "error" in r.json()
    empty = tmp_path / "empty"
    empty.mkdir()
    app = create_app(engine, web_dir=empty)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        assert (await c.get("/")).status_code == 404
