"""What prefix affinity remembers: which endpoint took which prompt prefix.

A prompt is serialized (its messages in order, or the completion prompt) and cut into
blocks of ``AffinityPolicy.block_size`` bytes; each block is hashed together with everything
before it (``prefix_key``), as servers hash their KV-cache blocks. ``PrefixMap`` remembers
the endpoint that last took each block (least recently used forgotten first) and answers
"where did the longest known prefix of this prompt go?". A prefix never seen has its place
on a consistent-hash ring of the endpoints (points in proportion to their weights), so every
router, in every process, sends a given system prompt to the same replica, and removing an
endpoint moves only its own share.

Not thread-safe by itself: ``routing.Routing`` holds its lock around every use.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from .._exceptions import RouterConfigError

__all__ = ["AffinityPolicy", "PrefixKey", "PrefixMap", "prefix_key"]

PrefixKey: TypeAlias = tuple[bytes, ...]  # chained block hashes, shortest prefix first

_RING_POINTS = 64  # ring points per unit of weight: enough for an even spread of prefixes


@dataclass(frozen=True)
class AffinityPolicy:
    """Tuning of the ``prefix_affinity`` strategy.

    ``block_size``: bytes of serialized prompt per hashed block (finer blocks find longer
    matches, at more hashing). ``busy_threshold``: how many more calls in flight than the least
    loaded endpoint the preferred one may have before the call goes elsewhere.
    ``remembered_blocks``: prefix blocks remembered (least recently used forgotten first).

    >>> Router(endpoints, strategy="prefix_affinity", affinity=AffinityPolicy(busy_threshold=2))
    ... # doctest: +SKIP
    """

    block_size: int = 256
    busy_threshold: int = 4
    remembered_blocks: int = 50_000

    def __post_init__(self) -> None:
        for name in ("block_size", "remembered_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise RouterConfigError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.busy_threshold, int) or self.busy_threshold < 0:
            raise RouterConfigError(
                f"busy_threshold must be an int >= 0, got {self.busy_threshold!r}"
            )


def prefix_key(body: Mapping[str, object] | None, block_size: int) -> PrefixKey:
    """Chained hashes of a request's prompt, block by block (``()`` when it has none).

    Two requests share the first ``k`` hashes exactly when their serialized prompts share the
    first ``k`` blocks: same system prompt, same earlier turns.

    >>> a = prefix_key({"messages": [{"role": "system", "content": "x" * 300}]}, 256)
    >>> b = prefix_key({"messages": [{"role": "system", "content": "x" * 300}, {}]}, 256)
    >>> a[0] == b[0], len(a), len(b)
    (True, 2, 2)
    """
    if body is None:
        return ()
    messages, prompt = body.get("messages"), body.get("prompt")
    if isinstance(messages, list):
        text = "\n".join(_canonical(m) for m in messages)
    elif isinstance(prompt, str):
        text = prompt
    elif prompt is not None:
        text = _canonical(prompt)
    else:
        return ()
    data = text.encode("utf-8")
    key: list[bytes] = []
    digest = b""
    for start in range(0, len(data), block_size):
        digest = hashlib.blake2b(digest + data[start : start + block_size], digest_size=16).digest()
        key.append(digest)
    return tuple(key)


class PrefixMap:
    """The prefixes endpoints took, and the ring that places new ones.

    ``endpoints``: (name, weight) of each endpoint, by index.

    >>> prefixes = PrefixMap([("a", 1.0), ("b", 1.0)], AffinityPolicy())
    >>> key = prefix_key({"prompt": "You are a helpful assistant."}, 256)
    >>> prefixes.longest_match(key, {0, 1}) is None
    True
    >>> prefixes.learn(key, 1); prefixes.longest_match(key, {0, 1})
    1
    """

    def __init__(self, endpoints: Sequence[tuple[str, float]], policy: AffinityPolicy) -> None:
        self.policy = policy
        self._learned: OrderedDict[bytes, int] = OrderedDict()
        ring = sorted(
            (_point(f"{name}#{v}".encode()), i)
            for i, (name, weight) in enumerate(endpoints)
            for v in range(max(1, round(_RING_POINTS * weight)))
        )
        self._points = [p for p, _ in ring]
        self._owners = [i for _, i in ring]

    def longest_match(self, key: PrefixKey, ready: Collection[int]) -> int | None:
        """The endpoint in ``ready`` that took the longest prefix of ``key``, if any did."""
        for digest in reversed(key):
            owner = self._learned.get(digest)
            if owner is not None and owner in ready:
                return owner
        return None

    def on_ring(self, digest: bytes, ready: Collection[int]) -> int:
        """The first endpoint of ``ready`` clockwise from ``digest`` on the ring."""
        start = bisect.bisect(self._points, _point(digest))
        owners = self._owners
        # every endpoint has points, so one of ready is always met
        return next(
            owners[(start + k) % len(owners)]
            for k in range(len(owners))
            if owners[(start + k) % len(owners)] in ready
        )

    def learn(self, key: PrefixKey, i: int) -> None:
        """Endpoint ``i`` takes every prefix of ``key``."""
        learned = self._learned
        for digest in key:
            learned[digest] = i
            learned.move_to_end(digest)
        while len(learned) > self.policy.remembered_blocks:
            learned.popitem(last=False)


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _point(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
