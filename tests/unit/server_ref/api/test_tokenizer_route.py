"""``GET /v1/models/{model}/tokenizer`` on server_ref, and the SDK rebuilding the tokenizer
from it: over the tiny GGUF model the tests write themselves (no download)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import sdk
from sdk.tokens import ModelTokenizer, tokenizer_from_gguf
from server_ref.api import create_app
from server_ref.engine.types import EngineStats, ModelInfo


@dataclass
class StubEngine:
    """Just enough of an ``EngineClient`` for the tokenizer routes."""

    tokenizer: Any
    model_info: ModelInfo

    def is_ready(self) -> bool:
        return True

    def stats(self) -> EngineStats:
        return EngineStats(0, 0, 0, 1)

    def add_request(self, *args: Any) -> AsyncIterator[Any]:
        raise AssertionError("not used")

    def abort(self, request_id: str) -> None:
        pass


@pytest.fixture(scope="module")
def gguf_tokenizer(tiny_gguf: Path) -> ModelTokenizer:
    return tokenizer_from_gguf(tiny_gguf)


def app_for(tokenizer: Any, **kwargs: Any) -> Any:
    info = ModelInfo(id="tiny", context_length=384, eos_token_ids=(0,))
    return create_app(StubEngine(tokenizer, info), enable_web=False, **kwargs)


def get(app: Any, path: str, **kwargs: Any) -> httpx.Response:
    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, **kwargs)

    return asyncio.run(main())


def test_export_links_the_ranks_with_their_sha256(gguf_tokenizer: ModelTokenizer) -> None:
    app = app_for(gguf_tokenizer)
    body = get(app, "/v1/models/tiny/tokenizer").json()
    assert body["object"] == "tokenizer" and body["model"] == "tiny"
    assert body["pattern"] == gguf_tokenizer.pattern
    assert body["special_tokens"] == gguf_tokenizer.special_tokens
    assert body["chat_template"] == gguf_tokenizer.chat_template
    assert body["context_length"] == 384  # what the engine accepts, not the file's 512
    assert body["n_vocab"] == gguf_tokenizer.n_vocab and body["ranks"] is None
    assert body["ranks_url"] == "tokenizer/ranks"
    ranks = get(app, "/v1/models/tiny/tokenizer/ranks")
    assert ranks.headers["content-type"].startswith("text/plain")
    assert hashlib.sha256(ranks.content).hexdigest() == body["ranks_sha256"]
    assert ranks.headers["etag"] == f'"{body["ranks_sha256"]}"'
    again = get(
        app, "/v1/models/tiny/tokenizer/ranks", headers={"if-none-match": ranks.headers["etag"]}
    )
    assert again.status_code == 304 and not again.content


def test_export_with_inline_ranks(gguf_tokenizer: ModelTokenizer) -> None:
    body = get(app_for(gguf_tokenizer), "/v1/models/tiny/tokenizer?ranks=inline").json()
    assert hashlib.sha256(body["ranks"].encode()).hexdigest() == body["ranks_sha256"]
    bad = get(app_for(gguf_tokenizer), "/v1/models/tiny/tokenizer?ranks=zip")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "ranks"


def test_unknown_model_is_a_404_in_openai_shape(gguf_tokenizer: ModelTokenizer) -> None:
    for path in ("/v1/models/other/tokenizer", "/v1/models/org/other/tokenizer/ranks"):
        response = get(app_for(gguf_tokenizer), path)
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"


def test_the_api_key_guards_the_export(gguf_tokenizer: ModelTokenizer) -> None:
    app = app_for(gguf_tokenizer, api_key="sk-local")
    assert get(app, "/v1/models/tiny/tokenizer").status_code == 401
    assert get(app, "/v1/models/tiny/tokenizer/ranks").status_code == 401
    ok = get(app, "/v1/models/tiny/tokenizer", headers={"Authorization": "Bearer sk-local"})
    assert ok.status_code == 200


def test_a_tokenizer_that_cannot_be_exported_is_a_404() -> None:
    class ByteTokenizer:  # like the HTTP tests' fake engine: encode/decode only
        def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
            return list(text.encode())

    response = get(app_for(ByteTokenizer()), "/v1/models/tiny/tokenizer")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "tokenizer_not_exportable"


def test_model_routes_still_answer(gguf_tokenizer: ModelTokenizer) -> None:
    assert get(app_for(gguf_tokenizer), "/v1/models/tiny").json()["id"] == "tiny"


# --- the SDK against the real engine on the tiny model ---------------------------------------


@pytest.fixture(scope="module")
def tiny_engine(tiny_gguf: Path) -> Iterator[Any]:
    from server_ref.engine.async_engine import AsyncEngine
    from server_ref.engine.build import EngineConfig, build_engine

    engine = AsyncEngine(build_engine(str(tiny_gguf), EngineConfig(device="cpu", kv_cache_mib=8)))
    engine.start()
    yield engine
    engine.shutdown()


CHATS = [
    [{"role": "user", "content": "hello"}],
    [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": "the <|im_start|>user turn"},
    ],
    [
        {"role": "user", "content": ""},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "ünï 🎉"},
    ],
    [
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b<|im_end|>"}],
        }
    ],
    [
        {"role": "user", "content": "x", "name": "ann"},
        {"role": "user", "content": "  spaced\n\n\tout  "},
    ],
]


def test_local_counts_equal_the_servers_usage(tiny_engine: Any) -> None:
    app = create_app(tiny_engine, enable_web=False)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with sdk.AsyncClient(base_url="http://test/v1", transport=transport) as client:
            model = (await client.models.list()).data[0].id
            tok = await client.tokenizer(model)
            assert tok.exact and tok.context_length == tiny_engine.model_info.context_length
            for messages in CHATS:
                reply = await client.chat.completions.create(
                    model=model, messages=messages, max_tokens=1, temperature=0
                )
                assert reply.usage is not None
                assert tok.count_chat(messages) == reply.usage.prompt_tokens, messages
                served = await client.tokenize(model=model, messages=messages)
                assert tok.encode(tok.render_chat(messages)) == served.tokens
            text = "plain <|im_end|> text ünï"
            assert tok.encode(text) == (await client.tokenize(model=model, prompt=text)).tokens

    asyncio.run(main())
