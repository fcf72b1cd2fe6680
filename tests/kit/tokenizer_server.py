"""A scripted OpenAI-compatible server for token tests (an ``httpx.MockTransport`` handler),
a toy byte-level BPE tokenizer and a simulated clock.

The toy vocabulary: the 256 single bytes, a few merges, ChatML's special tokens, GPT-2's
pre-tokenizer and a ChatML template. The fake server counts prompts with the *server-side*
path of ``sdk.tokens`` (``export_tokenizer`` -> ``tokenizer_from_export``), like server_ref.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from sdk.tokens import PRE_TOKENIZER_PATTERNS, export_tokenizer, tokenizer_from_export
from sdk.tokens.tokenizer import ModelTokenizer
from sdk.types import TokenizerExport

MODEL = "toy-model"
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MERGES = [b"he", b"ll", b"hell", b"hello", b" t", b" th", b" the", b"or", b" w", b" wor"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def toy_export(
    *, context_length: int | None = 256, chat_template: str | None = CHATML, model: str = MODEL
) -> tuple[TokenizerExport, bytes]:
    ranks = {bytes([b]): b for b in range(256)}
    for merge in MERGES:
        ranks[merge] = len(ranks)
    specials = {text: len(ranks) + i for i, text in enumerate(SPECIALS)}
    return export_tokenizer(
        model=model,
        pattern=PRE_TOKENIZER_PATTERNS["gpt2"],
        mergeable_ranks=ranks,
        special_tokens=specials,
        n_vocab=len(ranks) + len(specials),
        chat_template=chat_template,
        eos_token="<|im_end|>",
        context_length=context_length,
    )


def toy_tokenizer(**kwargs: Any) -> ModelTokenizer:
    export, ranks = toy_export(**kwargs)
    return tokenizer_from_export(export, ranks)


class SimClock:
    """Simulated time for any number of threads or asyncio tasks.

    ``sleep(s)`` (sync) / ``asleep(s)`` (async) block the caller until the clock reaches
    ``now + s``; the clock only moves when every live worker is asleep, and then jumps to
    the earliest wake-up. Workers call ``done()`` when they finish. Nothing really sleeps.
    """

    def __init__(self, workers: int) -> None:
        self.now = 0.0
        self._live = workers
        self._sleeping = 0
        self._wakeups: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()

    def __call__(self) -> float:
        return self.now

    def _advance_if_idle(self) -> None:  # with the condition held
        if self._live > 0 and self._sleeping == self._live and self._wakeups:
            self.now = max(self.now, self._wakeups[0][0])
            while self._wakeups and self._wakeups[0][0] <= self.now:
                _, _, waiter = heapq.heappop(self._wakeups)
                self._sleeping -= 1  # counted awake from now on, before it even runs
                if isinstance(waiter, asyncio.Future):
                    if not waiter.done():
                        waiter.set_result(None)
                else:
                    waiter.set()
            self._cond.notify_all()

    def sleep(self, seconds: float) -> None:
        flag = threading.Event()
        with self._cond:
            heapq.heappush(self._wakeups, (self.now + seconds, next(self._seq), flag))
            self._sleeping += 1
            self._advance_if_idle()
            while not flag.is_set():
                self._cond.wait()

    async def asleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._cond:
            heapq.heappush(self._wakeups, (self.now + seconds, next(self._seq), future))
            self._sleeping += 1
            self._advance_if_idle()
        await future

    def done(self) -> None:
        with self._cond:
            self._live -= 1
            self._advance_if_idle()


@dataclass
class FakeServer:
    """An OpenAI-compatible server with the tokenizer export, scripted by its fields."""

    export: TokenizerExport = field(default_factory=lambda: toy_export()[0])
    ranks: bytes = field(default_factory=lambda: toy_export()[1])
    served_ranks: bytes | None = None  # what GET .../ranks returns (default: ``ranks``)
    ranks_mode: str = "url"  # "url" | "inline"
    ranks_url: str = "tokenizer/ranks"
    has_export: bool = True
    has_tokenize: bool = True
    max_model_len: int | None = None  # reported by GET /v1/models/{id} and /tokenize
    completion_tokens: int = 2  # generated per choice (capped by max_tokens)
    rate_limit_first: int = 0  # answer the first N chat calls with 429
    retry_after: float = 30.0
    clock: Callable[[], float] = lambda: 0.0
    requests: list[httpx.Request] = field(default_factory=list)
    log: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)  # generations
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.tokenizer = tokenizer_from_export(self.export, self.ranks)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        path = request.url.path
        if request.method == "GET" and path.endswith("/tokenizer/ranks"):
            return self._ranks()
        if request.method == "GET" and path.endswith("/tokenizer"):
            return self._export(path)
        if request.method == "GET" and path.startswith("/v1/models/"):
            return self._model(path.removeprefix("/v1/models/"))
        if path == "/tokenize" and self.has_tokenize:
            return self._tokenize(json.loads(request.content))
        if path in ("/v1/chat/completions", "/v1/completions"):
            return self._generate(path, json.loads(request.content))
        return error(404, f"Invalid URL ({request.method} {path})")

    def _export(self, path: str) -> httpx.Response:
        if not self.has_export:
            return error(404, f"Invalid URL (GET {path})")
        model = path.removeprefix("/v1/models/").removesuffix("/tokenizer")
        if model != self.export.model:
            return error(404, f"The model '{model}' does not exist.", code="model_not_found")
        if self.ranks_mode == "inline":
            body = self.export.model_copy(update={"ranks": self.ranks.decode()})
        else:
            body = self.export.model_copy(update={"ranks_url": self.ranks_url})
        return httpx.Response(200, json=body.model_dump(mode="json"))

    def _ranks(self) -> httpx.Response:
        data = self.ranks if self.served_ranks is None else self.served_ranks
        return httpx.Response(200, content=data, headers={"content-type": "text/plain"})

    def _model(self, model: str) -> httpx.Response:
        card = {"id": model, "object": "model", "created": 0, "owned_by": "test"}
        if self.max_model_len is not None:
            card["max_model_len"] = self.max_model_len
        return httpx.Response(200, json=card)

    def _tokenize(self, body: dict[str, Any]) -> httpx.Response:
        if "messages" in body:
            tokens = self.tokenizer.encode(self.tokenizer.render_chat(body["messages"]))
        else:
            tokens = self.tokenizer.encode(body["prompt"])
        answer: dict[str, Any] = {"tokens": tokens, "count": len(tokens)}
        if self.max_model_len is not None:
            answer["max_model_len"] = self.max_model_len
        return httpx.Response(200, json=answer)

    def _generate(self, path: str, body: dict[str, Any]) -> httpx.Response:
        with self._lock:
            if self.rate_limit_first > 0:
                self.rate_limit_first -= 1
                return error(
                    429,
                    "slow down",
                    code="rate_limit_exceeded",
                    headers={"retry-after": str(self.retry_after)},
                )
        if path == "/v1/chat/completions":
            prompt_tokens = self.tokenizer.count_chat(body["messages"])
        else:
            prompt_tokens = self._prompt_tokens(body["prompt"])
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 10**9
        completion = min(self.completion_tokens, max_tokens) * (body.get("n") or 1)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }
        with self._lock:
            self.log.append((self.clock(), path, {"body": body, "usage": usage}))
        if path == "/v1/chat/completions":
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": "hi"},
                "finish_reason": "stop",
            }
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": "hi", "finish_reason": "stop"}
            kind = "text_completion"
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": kind,
                "created": 0,
                "model": MODEL,
                "choices": [choice],
                "usage": usage,
            },
        )

    def _prompt_tokens(self, prompt: Any) -> int:
        if isinstance(prompt, str):
            return self.tokenizer.count(prompt)
        if prompt and isinstance(prompt[0], int):
            return len(prompt)
        return sum(self._prompt_tokens(p) for p in prompt)


def error(
    status: int, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
    return httpx.Response(status, json=body, headers=headers)


USER = [{"role": "user", "content": "hello world"}]
