"""llama.cpp's servers, recorded: what they answered the SDK, replayed without them.

``scripts/run_peer_suite.py --record`` runs :func:`record_scenario` against the real
``llama-server`` and llama-cpp-python server and writes every exchange to
``tests/fixtures/llamacpp/<server>.json``. :class:`Replay` answers an ``httpx.MockTransport``'s
requests from such a file, so the unit tests meet the servers' real response shapes (their
404s, ``{"tokens": []}`` for a request they did not understand, their error bodies) with no
server running, and can take endpoints away (``without``) or break answers (``answering``).

A request is looked up by what decides its answer (method, path, whether the key was right,
and the fields the endpoint reads). A path the recording never saw gets the server's answer to
an unknown URL; a known path asked something new fails the test with a line saying to record
again.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import sdk
from kit.recording import Recording

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "llamacpp"
API_KEY = "sk-peer-suite"  # the key the recorded servers were started with

# what the scenario asks: chats (one ends with the assistant's turn, one has tools, one is
# refused by llama.cpp), completion prompts
CHATS: dict[str, list[dict[str, Any]]] = {
    "plain": [{"role": "user", "content": "What is the capital of France?"}],
    "special": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say <|im_start|> and <|im_end|>: ünï 中文 🎉"},
    ],
    "prefill": [
        {"role": "user", "content": "Count to three."},
        {"role": "assistant", "content": "One, two,"},
    ],
}
REFUSED = [
    {"role": "user", "content": "a"},
    {"role": "assistant", "content": "b"},
    {"role": "assistant", "content": "c"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
PROMPTS = {"plain": "The capital of France is", "special": "<|im_start|>user\nHi<|im_end|>\n"}
GREEDY = {"max_tokens": 1, "temperature": 0}
UNKNOWN = "/no-such-endpoint"


def record_scenario(base_url: str, model: str, exchanges: list[dict[str, Any]]) -> None:
    """Make the scenario's SDK calls against a live server, recording every exchange."""
    transport = Recorder(exchanges)

    def client(key: str = API_KEY) -> sdk.Client:  # a new one: nothing learnt yet
        return sdk.Client(base_url=base_url, api_key=key, transport=transport, max_retries=0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sdk.tokens.TokenCountWarning)
        client().tokenizer(model)
        client().models.list()
        counting = client()
        for messages in CHATS.values():
            counting.count_tokens(model, messages=messages)
        counting.count_tokens(model, messages=CHATS["plain"], tools=TOOLS)
        for prompt in PROMPTS.values():
            counting.count_tokens(model, prompt=prompt)
            client().count_tokens(model, prompt=prompt)  # a prompt counted first
        with suppress(sdk.APIStatusError):
            counting.count_tokens(model, messages=REFUSED)
        for messages in CHATS.values():
            client().chat.completions.create(model=model, messages=messages, **GREEDY)
        client().chat.completions.create(
            model=model, messages=CHATS["plain"], tools=TOOLS, **GREEDY
        )
        for prompt in PROMPTS.values():
            client().completions.create(model=model, prompt=prompt, **GREEDY)
        with suppress(sdk.AuthenticationError):
            client("sk-wrong").models.list()
        # what the server answers to a URL it does not have (``Replay.without``)
        root = base_url.removesuffix("/").removesuffix("/v1")
        with httpx.Client(
            transport=transport, headers={"authorization": f"Bearer {API_KEY}"}
        ) as raw:
            raw.post(f"{root}{UNKNOWN}", json={})


class Recorder(Recording):
    """A real transport that writes each new exchange down as a fixture entry."""

    def __init__(self, exchanges: list[dict[str, Any]]) -> None:
        super().__init__()
        self.exchanges = exchanges

    def _keep(
        self, request: httpx.Request, response: httpx.Response, body: bytes
    ) -> httpx.Response:
        entry = {
            "method": request.method,
            "path": request.url.path,
            "authorized": request.headers.get("authorization") == f"Bearer {API_KEY}",
            "body": json.loads(request.content) if request.content else None,
            "status": response.status_code,
            "content_type": response.headers.get("content-type", ""),
            "response": _json_or_text(body),
        }
        if not any(_key(e) == _key(entry) for e in self.exchanges):
            self.exchanges.append(entry)
        return super()._keep(request, response, body)


def _json_or_text(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", errors="replace")


def _key(entry: dict[str, Any]) -> tuple[Any, ...]:
    """What decides an answer: the fields each endpoint reads, nothing else."""
    body = entry["body"] or {}
    base = (entry["authorized"], entry["method"], entry["path"])
    if entry["path"] == "/tokenize":
        if "content" in body:  # llama.cpp's; without it llama.cpp answers {"tokens": []}
            return (*base, body["content"], body.get("add_special", False))
        return (*base, "prompt" in body, json.dumps(body.get("messages"), sort_keys=True))
    if entry["path"] in ("/apply-template", "/v1/chat/completions"):
        fields = {k: body.get(k) for k in ("messages", "tools", "tool_choice")}
        return (*base, json.dumps(fields, sort_keys=True))
    if entry["path"] in ("/extras/tokenize", "/v1/completions"):
        return (*base, body.get("input", body.get("prompt")))
    return base


@dataclass
class Replay:
    """An ``httpx.MockTransport`` handler answering as a recorded server did.

    >>> server = Replay.load("llama-server")
    >>> client = sdk.Client(base_url="http://peer/v1", api_key=API_KEY,
    ...                     transport=httpx.MockTransport(server))  # doctest: +SKIP
    """

    name: str
    exchanges: list[dict[str, Any]]
    model: str
    requests: list[httpx.Request] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)  # paths answered with the server's 404
    rewrite: dict[str, Callable[[Any], Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, name: str) -> Replay:
        data = json.loads((FIXTURES / f"{name}.json").read_text())
        return cls(name, data["exchanges"], data["model"])

    def without(self, path: str) -> Replay:
        """This server with ``path`` taken away (it answers as to an unknown URL)."""
        self.missing.add(path)
        return self

    def answering(self, path: str, rewrite: Callable[[Any], Any]) -> Replay:
        """This server with the JSON answers of ``path`` passed through ``rewrite``."""
        self.rewrite[path] = rewrite
        return self

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]

    def find(self, **fields: Any) -> Iterator[dict[str, Any]]:
        """The recorded exchanges whose fields are as given."""
        return (e for e in self.exchanges if all(e.get(k) == v for k, v in fields.items()))

    def usage(self, path: str, **body: Any) -> dict[str, Any]:
        """The ``usage`` of a recorded generation (chat or completion) with this body."""
        for entry in self.find(path=path, authorized=True):
            if all((entry["body"] or {}).get(k) == v for k, v in body.items()):
                usage: dict[str, Any] = entry["response"]["usage"]
                return usage
        raise AssertionError(f"{self.name}: no recorded {path} with {body}")

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        entry = {
            "method": request.method,
            "path": request.url.path,
            "authorized": request.headers.get("authorization") == f"Bearer {API_KEY}",
            "body": json.loads(request.content) if request.content else None,
        }
        recorded_paths = {e["path"] for e in self.exchanges}
        if request.url.path in self.missing or request.url.path not in recorded_paths:
            entry = {**entry, "method": "POST", "path": UNKNOWN, "body": {}}
        for recorded in self.exchanges:
            if _key(recorded) == _key(entry):
                return self._answer(request.url.path, recorded)
        raise AssertionError(
            f"{self.name} never answered {request.method} {request.url.path} "
            f"{request.content[:300]!r} when recorded: run scripts/run_peer_suite.py --record"
        )

    def _answer(self, path: str, recorded: dict[str, Any]) -> httpx.Response:
        body = recorded["response"]
        headers = {"content-type": recorded["content_type"]}
        if path in self.rewrite and recorded["status"] == 200:
            body = self.rewrite[path](json.loads(json.dumps(body)))
        if isinstance(body, str):
            return httpx.Response(recorded["status"], text=body, headers=headers)
        return httpx.Response(recorded["status"], json=body, headers=headers)
