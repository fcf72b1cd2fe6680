"""Scripted replicas for router tests: several OpenAI-compatible servers behind one
``httpx.MockTransport``, told apart by host (``http://a.test/v1``, ``http://b.test/v1``, ...).

Each ``Replica`` answers chat completions (streamed or not), completions, embeddings and the
model list, records every request, and can be scripted to fail: ``replica.fail("refused",
503, ...)`` queues failures for its next requests; ``replica.down = True`` refuses everything.
Failure kinds: an HTTP status (with an OpenAI error body and ``Retry-After`` for 429),
``"refused"`` (connect error), ``"timeout"`` (read timeout), ``"cut"`` (a 2xx stream that ends
before its first event) and ``"mid_stream"`` (a 2xx stream that breaks after one chunk).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from kit.clients import TrackedStream, chat_chunk, completion_body, sse
from kit.tokenizer_server import error

Failure = int | str


@dataclass
class Replica:
    name: str
    down: bool = False
    retry_after: float | None = None  # sent with a scripted 429
    requests: list[httpx.Request] = field(default_factory=list)
    script: list[Failure] = field(default_factory=list)
    on_request: Callable[[Replica, httpx.Request], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.name}.test/v1"

    def fail(self, *failures: Failure) -> Replica:
        self.script.extend(failures)
        return self

    def calls(self, path: str = "/v1/chat/completions") -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            failure = self.script.pop(0) if self.script else None
        if self.on_request is not None:
            self.on_request(self, request)
        if self.down or failure == "refused":
            raise httpx.ConnectError("Connection refused", request=request)
        if failure == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if isinstance(failure, int):
            headers = {}
            if failure == 429 and self.retry_after is not None:
                headers["retry-after"] = str(self.retry_after)
            return error(failure, f"scripted {failure} from {self.name}", headers=headers)
        return self._answer(request, failure)

    def _answer(self, request: httpx.Request, failure: Failure | None) -> httpx.Response:
        path = request.url.path
        if path == "/v1/models":
            data = [{"id": "m", "object": "model", "created": 0, "owned_by": self.name}]
            return httpx.Response(200, json={"object": "list", "data": data})
        if path.startswith("/v1/models/"):
            model = path.removeprefix("/v1/models/")
            return httpx.Response(200, json={"id": model, "created": 0, "owned_by": self.name})
        body = json.loads(request.content)
        if path == "/v1/embeddings":
            return httpx.Response(200, json=_embeddings(body))
        if body.get("stream"):
            return self._stream(body, failure)
        if path == "/v1/completions":
            answer = completion_body(self.name) | {"object": "text_completion"}
            answer["choices"] = [{"index": 0, "text": self.name, "finish_reason": "stop"}]
        else:
            answer = completion_body(self.name)
        return httpx.Response(200, json=answer | {"model": body.get("model", "m")})

    def _stream(self, body: dict[str, Any], failure: Failure | None) -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        if failure == "cut":
            return httpx.Response(200, stream=TrackedStream([]), headers=headers)
        first = sse(chat_chunk(delta={"role": "assistant"}, model=body["model"]), done=False)
        if failure == "mid_stream":
            broken = httpx.ReadError("connection reset")
            return httpx.Response(200, stream=TrackedStream([first], broken), headers=headers)
        usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        rest = sse(
            chat_chunk(self.name, model=body["model"]),
            chat_chunk(finish_reason="stop", model=body["model"]),
            chat_chunk(choices=[], usage=usage, model=body["model"]),
        )
        return httpx.Response(200, stream=TrackedStream([first, rest]), headers=headers)


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = [
        {"index": i, "embedding": [0.5, 0.5], "object": "embedding"} for i in range(len(inputs))
    ]
    usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
    return {"object": "list", "data": data, "model": body["model"], "usage": usage}


class Replicas:
    """A ``MockTransport`` handler that sends each request to the replica named by its host."""

    def __init__(self, names: Iterable[str] = ("a", "b", "c")) -> None:
        self.by_name = {name: Replica(name) for name in names}
        self.log: list[tuple[str, httpx.Request]] = []  # (replica, request), in arrival order
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Replica:
        return self.by_name[name]

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.by_name.values()]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        name = request.url.host.removesuffix(".test")
        with self._lock:
            self.log.append((name, request))
        return self.by_name[name](request)

    def served(self, path: str = "/v1/chat/completions") -> list[str]:
        """Which replica got each request to ``path``, in arrival order."""
        return [name for name, request in self.log if request.url.path == path]
