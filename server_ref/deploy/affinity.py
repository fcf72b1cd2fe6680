"""Prefix affinity: which replica a generation request should go to (no Ray imported here).

A replica's prefix cache holds the key/value blocks of the prompts it computed lately, so a
conversation whose earlier turns ran on replica A is prefilled on A only from its newest
message; on any other replica, from its first token. The router therefore remembers which
prompt text it sent where, in a ``PrefixIndex``: the text in chunks of ``chunk_chars``
characters, each chunk's key a hash of the chunk and of the key before it (so one key stands
for the whole prefix up to its chunk's end, as vLLM's block hashes do), in LRU order, at most
``max_chunks`` keys. Text rather than tokens: the router runs in front of the engines and has
no tokenizer; a prefix of the text is a prefix of the rendered prompt, which is what counts.

``preferred_replicas`` decides, for one request:

1. the replicas that hold the longest indexed prefix of its text (one chunk at least);
2. if none does, the least loaded replicas, and of those the ones with the least indexed
   text: new conversations spread over the replicas, also when they come one at a time;
3. minus any of those whose queue is more than ``max_imbalance`` requests longer than the
   least loaded replica's: an overloaded replica's cache is not worth waiting for.

An empty answer means "no preference", and the caller uses Serve's power of two choices.
Ray's own ``PrefixCacheAffinityRouter`` follows the same three steps, but it ships with the
vLLM stack (``ray[llm]``) and keeps its tree in a separate actor it calls with ``ray.get``
on every request.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "CHAT_PATH",
    "COMPLETIONS_PATH",
    "INDEXES",
    "PrefixIndex",
    "body_routing_text",
    "preferred_replicas",
    "routing_text",
]

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
CHUNK_CHARS = 32
MAX_CHUNKS = 200_000  # ~6 MB of prompt text remembered; the engines' caches hold less
MAX_IMBALANCE = 8
# the prefix routers' indexes in this process, by the deployment they route to, for what a
# router does not see itself (``ray_route`` records the replicas it only had chosen)
INDEXES: dict[Hashable, PrefixIndex] = {}


def routing_text(path: str, body: bytes) -> str | None:
    """The text of a generation request that decides its replica, or ``None`` (any other
    request, or a body the server will reject anyway).

    Chat messages are joined with their roles (and tool calls), in order, so the text of a
    conversation's turn starts with the text of every earlier turn.

    >>> routing_text("/v1/completions", b'{"prompt": "Once upon"}')
    'Once upon'
    """
    if path not in (CHAT_PATH, COMPLETIONS_PATH):
        return None
    payload = _json_object(body)
    return None if payload is None else _payload_text(path, payload)


def body_routing_text(body: bytes) -> str | None:
    """``routing_text`` of a request whose path is not known (HAProxy's ingress request router
    forwards the body alone): a chat request if the body has ``messages``, else a completion.

    >>> body_routing_text(b'{"messages": [{"role": "user", "content": "hi"}]}')
    '<user>hi\\n'
    """
    payload = _json_object(body)
    if payload is None:
        return None
    return _payload_text(CHAT_PATH if "messages" in payload else COMPLETIONS_PATH, payload)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _payload_text(path: str, payload: dict[str, Any]) -> str | None:
    if path == CHAT_PATH:
        messages = payload.get("messages")
        if not isinstance(messages, list):
            return None
        return "".join(_message_text(m) for m in messages if isinstance(m, dict)) or None
    prompt = payload.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]  # one prompt in a list; a batch of several has no one prefix
    if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
        return ",".join(map(str, prompt)) or None  # token ids
    return prompt if isinstance(prompt, str) and prompt else None


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: their text, in order
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    calls = message.get("tool_calls")
    tools = json.dumps(calls, sort_keys=True) if calls else ""
    return f"<{message.get('role')}>{content or ''}{tools}\n"


class PrefixIndex:
    """Which replicas were sent which prompt text (see the module docstring).

    >>> index = PrefixIndex(chunk_chars=4)
    >>> index.insert("abcdefgh", "A")
    >>> index.match("abcdefXY")
    (4, {'A'})
    """

    def __init__(self, *, chunk_chars: int = CHUNK_CHARS, max_chunks: int = MAX_CHUNKS) -> None:
        self.chunk_chars = chunk_chars
        self.max_chunks = max_chunks
        self._holders: OrderedDict[int, set[str]] = OrderedDict()  # LRU: oldest first
        self.sizes: Counter[str] = Counter()  # indexed chunks per replica

    def _keys(self, text: str) -> Iterator[int]:
        key = 0
        for end in range(self.chunk_chars, len(text) + 1, self.chunk_chars):
            key = hash((key, text[end - self.chunk_chars : end]))
            yield key

    def insert(self, text: str, replica: str) -> None:
        """Remember that ``replica`` was sent ``text`` (its whole chunks)."""
        for key in self._keys(text):
            holders = self._holders.setdefault(key, set())
            self._holders.move_to_end(key)
            if replica not in holders:
                holders.add(replica)
                self.sizes[replica] += 1
        while len(self._holders) > self.max_chunks:
            _, evicted = self._holders.popitem(last=False)
            self.sizes.subtract(evicted)

    def match(self, text: str, among: Sequence[str] | None = None) -> tuple[int, set[str]]:
        """(characters matched, the replicas holding that longest indexed prefix of
        ``text``), only counting replicas in ``among`` when given; ``(0, set())`` if none."""
        best: tuple[int, set[str]] = (0, set())
        allowed = None if among is None else set(among)
        for n, key in enumerate(self._keys(text), start=1):
            holders = self._holders.get(key)
            if holders is not None and allowed is not None:
                holders = holders & allowed
            if not holders:
                break
            self._holders.move_to_end(key)
            best = (n * self.chunk_chars, set(holders))
        return best

    def retain(self, replicas: Sequence[str]) -> None:
        """Forget every replica not in ``replicas`` (they stopped or died)."""
        gone = set(self.sizes) - set(replicas)
        if not gone:
            return
        for key in list(self._holders):
            holders = self._holders[key]
            holders -= gone
            if not holders:
                del self._holders[key]
        for replica in gone:
            del self.sizes[replica]


def preferred_replicas(
    text: str | None,
    candidates: Sequence[str],
    index: PrefixIndex,
    queue_lens: Mapping[str, int | None],
    *,
    max_imbalance: int = MAX_IMBALANCE,
) -> list[str]:
    """The replicas to try first for a request of ``text`` (see the module docstring); ``[]``
    for no preference. ``queue_lens``: each candidate's ongoing requests, ``None`` unknown.

    >>> index = PrefixIndex(chunk_chars=4)
    >>> index.insert("system: be brief. user: hi", "A")
    >>> preferred_replicas("system: be brief. user: hi", ["A", "B"], index, {"A": 0, "B": 0})
    ['A']
    >>> preferred_replicas("system: be brief. user: hi", ["A", "B"], index, {"A": 9, "B": 0})
    []
    """
    if not text or not candidates:
        return []
    matched, holders = index.match(text, candidates)
    if matched:
        preferred = [c for c in candidates if c in holders]
    else:  # least loaded (unknown: idle), then least indexed text
        load = {c: (queue_lens.get(c) or 0, index.sizes[c]) for c in candidates}
        least = min(load.values())
        preferred = [c for c in candidates if load[c] == least]
    # unknown counts as idle: a router hears of a replica's queue from what it sends there, so
    # the one it has sent nothing to lately is the one it knows nothing of (ray_route's
    # picks never hear of their requests ending at all)
    ceiling = min(queue_lens.get(c) or 0 for c in candidates) + max_imbalance
    return [c for c in preferred if (queue_lens.get(c) or 0) <= ceiling]
