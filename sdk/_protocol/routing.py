"""Routing decisions for a ``Router``: which endpoint takes the next attempt of a call.

Pure state: no I/O, no sleeping, and the clock is injected, so tests run a simulated one.
``Routing`` is shared by every call of a router (threads and asyncio tasks alike); its lock is
only held for bookkeeping, never across a wait.

Strategies (``Routing.pick``):

* ``round_robin`` — smooth weighted round robin (nginx's): an endpoint of weight 2 gets twice
  the calls of one of weight 1, interleaved rather than in bursts.
* ``least_outstanding`` — the fewest calls in flight per unit of weight (a stream is in flight
  until it ends); ties go to the endpoint picked least recently.
* ``prefix_affinity`` — calls whose prompts share a prefix go where that prefix went before, so
  the server's prefix cache (vLLM's, server_ref's) already holds its keys and values. A prompt
  is serialized (messages in order, or the completion prompt) and cut into blocks; each block
  is hashed together with everything before it (``prefix_key``), as the servers hash their KV
  blocks. The endpoint that last took the longest known prefix wins; a prefix never seen goes
  to its place on a consistent-hash ring (so every router, in every process, sends a given
  system prompt to the same replica). When that endpoint is busy beyond
  ``AffinityPolicy.busy_threshold`` calls more than the least loaded one, or cooling down,
  the least loaded one takes the call, and the prefix follows it.

Health: ``HealthPolicy.failures`` consecutive failures (``moves_on``: the endpoint was down,
overloaded or broken) start a cooldown of ``HealthPolicy.cooldown`` seconds, during which the
endpoint gets no calls while another can take them; a 429's ``Retry-After`` keeps it out at
least that long. After a cooldown the next failure starts another at once; a success resets
the count. When every endpoint is cooling down, the one back soonest is tried anyway.

Failover (``next_attempt``): a failure that ``moves_on`` goes to an endpoint this call has not
tried yet, at once; once all were tried, the retry policy's backoff applies. Other retryable
failures (409: the server still works on the same idempotency key) retry the same endpoint.
Client errors (4xx but 408 and 429) are final. The attempts of a call share one idempotency
key and ``RetryPolicy.max_retries`` bounds them all, whichever endpoint they go to.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias, get_args

from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    NoEndpointError,
    RouterConfigError,
)
from .options import RetryPolicy
from .retry import retry_delay, should_retry

__all__ = [
    "STRATEGIES",
    "AffinityPolicy",
    "EndpointStatus",
    "HealthPolicy",
    "NextAttempt",
    "PrefixKey",
    "Routable",
    "Routing",
    "Strategy",
    "moves_on",
    "next_attempt",
    "prefix_key",
]

Strategy: TypeAlias = Literal["round_robin", "least_outstanding", "prefix_affinity"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
PrefixKey: TypeAlias = tuple[bytes, ...]  # chained block hashes, shortest prefix first

_RING_POINTS = 64  # ring points per unit of weight: enough for an even spread of prefixes


class Routable(Protocol):
    """What routing needs to know of an endpoint (``sdk.Endpoint`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> float: ...

    @property
    def models(self) -> frozenset[str] | None: ...  # public model names; None: any


@dataclass(frozen=True)
class HealthPolicy:
    """When an endpoint is set aside: after ``failures`` consecutive failures, for ``cooldown``
    seconds.

    >>> Router(endpoints, health=HealthPolicy(failures=1, cooldown=5.0))  # doctest: +SKIP
    """

    failures: int = 3
    cooldown: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.failures, int) or self.failures < 1:
            raise RouterConfigError(f"failures must be an int >= 1, got {self.failures!r}")
        if not (isinstance(self.cooldown, int | float) and math.isfinite(self.cooldown)):
            raise RouterConfigError(f"cooldown must be a number of seconds, got {self.cooldown!r}")
        if self.cooldown < 0:
            raise RouterConfigError(f"cooldown must be >= 0, got {self.cooldown!r}")


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


@dataclass(frozen=True)
class EndpointStatus:
    """One endpoint as the router sees it now (``router.endpoint_status()``)."""

    name: str
    outstanding: int  # calls in flight (streams until they end)
    consecutive_failures: int
    cooldown_left: float  # seconds until it takes calls again; 0.0 when it does
    picks: int  # attempts sent to it so far
    failures: int  # of which failed (``moves_on``)


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


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _point(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class Routing:
    """The routing state of one router: load, health, round-robin and prefix memory.

    >>> routing = Routing(endpoints, "least_outstanding")  # doctest: +SKIP
    >>> pool = routing.candidates("llama")  # NoEndpointError if nobody serves it
    >>> i = routing.pick(pool)  # counted as in flight until release(i)
    """

    def __init__(
        self,
        endpoints: Sequence[Routable],
        strategy: str,
        *,
        health: HealthPolicy | None = None,
        affinity: AffinityPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoints:
            raise RouterConfigError("a Router needs at least one endpoint")
        if strategy not in STRATEGIES:
            raise RouterConfigError(
                f"unknown routing strategy {strategy!r}; use one of {', '.join(STRATEGIES)}"
            )
        names = [e.name for e in endpoints]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise RouterConfigError(
                f"endpoint names must be unique, {', '.join(map(repr, twice))} appears twice "
                "(the same URL listed twice? give each a name=)"
            )
        self.endpoints = tuple(endpoints)
        self.strategy = strategy
        self.health = health or HealthPolicy()
        self.affinity = affinity or AffinityPolicy()
        self._clock = clock
        self._lock = threading.Lock()
        n = len(endpoints)
        self._outstanding = [0] * n
        self._failures = [0] * n  # consecutive
        self._cooling_until = [-math.inf] * n
        self._current = [0.0] * n  # smooth weighted round robin
        self._last_pick = [0] * n
        self._picks = [0] * n
        self._failed = [0] * n
        self._serial = 0
        self._learned: OrderedDict[bytes, int] = OrderedDict()
        ring = sorted(
            (_point(f"{e.name}#{v}".encode()), i)
            for i, e in enumerate(endpoints)
            for v in range(max(1, round(_RING_POINTS * e.weight)))
        )
        self._ring_points = [p for p, _ in ring]
        self._ring_owners = [i for _, i in ring]

    # --- where a call may go -------------------------------------------------------------

    def candidates(self, model: str | None, only: Collection[int] | None = None) -> list[int]:
        """The endpoints that serve ``model`` (all, when the call names none), restricted to
        ``only`` when given; ``NoEndpointError`` when there is none."""
        pool = [
            i
            for i, e in enumerate(self.endpoints)
            if (only is None or i in only)
            and (model is None or e.models is None or model in e.models)
        ]
        if not pool:
            served = "; ".join(  # each of these has a list of models: none serves any
                f"{e.name}: {', '.join(sorted(e.models or ()))}"
                for i, e in enumerate(self.endpoints)
                if only is None or i in only
            )
            raise NoEndpointError(f"no endpoint serves model {model!r} ({served})")
        return pool

    def pick(
        self, pool: Sequence[int], key: PrefixKey = (), avoid: Collection[int] = ()
    ) -> int | None:
        """Choose an endpoint of ``pool`` but not of ``avoid`` for the next attempt and count
        it in flight (``release`` when the attempt is over); ``None`` if all are avoided."""
        with self._lock:
            now = self._clock()
            allowed = [i for i in pool if i not in avoid]
            if not allowed:
                return None
            ready = [i for i in allowed if self._cooling_until[i] <= now]
            if not ready:  # all cooling down: the one back soonest is the best bet
                ready = [min(allowed, key=lambda i: self._cooling_until[i])]
            return self._count(self._choose(ready, key), key)

    def take(self, i: int, key: PrefixKey = ()) -> int:
        """``pick`` without a choice: endpoint ``i`` takes the next attempt."""
        with self._lock:
            return self._count(i, key)

    def by_readiness(self, pool: Sequence[int]) -> list[int]:
        """``pool`` in order, the endpoints cooling down last (for one-off lookups)."""
        with self._lock:
            now = self._clock()
            return sorted(pool, key=lambda i: self._cooling_until[i] > now)

    def release(self, i: int) -> None:
        """An attempt on endpoint ``i`` is over (a stream: it ended)."""
        with self._lock:
            self._outstanding[i] = max(0, self._outstanding[i] - 1)

    # --- health --------------------------------------------------------------------------

    def succeeded(self, i: int) -> None:
        """Endpoint ``i`` answered (anything but a failure that ``moves_on``)."""
        with self._lock:
            self._failures[i] = 0

    def failed(self, i: int, retry_after: float | None = None) -> None:
        """Endpoint ``i`` failed (``moves_on``); ``retry_after``: the seconds it asked for."""
        with self._lock:
            now = self._clock()
            self._failures[i] += 1
            self._failed[i] += 1
            until = -math.inf
            if self._failures[i] >= self.health.failures:
                until = now + self.health.cooldown
            if retry_after is not None:
                until = max(until, now + retry_after)
            self._cooling_until[i] = max(self._cooling_until[i], until)

    def status(self) -> list[EndpointStatus]:
        """A snapshot of every endpoint's load and health."""
        with self._lock:
            now = self._clock()
            return [
                EndpointStatus(
                    name=e.name,
                    outstanding=self._outstanding[i],
                    consecutive_failures=self._failures[i],
                    cooldown_left=max(0.0, self._cooling_until[i] - now),
                    picks=self._picks[i],
                    failures=self._failed[i],
                )
                for i, e in enumerate(self.endpoints)
            ]

    # --- strategies (with the lock held) -------------------------------------------------

    def _count(self, chosen: int, key: PrefixKey) -> int:
        self._serial += 1
        self._last_pick[chosen] = self._serial
        self._outstanding[chosen] += 1
        self._picks[chosen] += 1
        if key:
            self._learn(key, chosen)
        return chosen

    def _choose(self, ready: list[int], key: PrefixKey) -> int:
        if self.strategy == "round_robin":
            return self._round_robin(ready)
        least = self._least_outstanding(ready)
        if self.strategy == "least_outstanding" or not key:
            return least
        preferred = self._longest_match(key, ready)
        if preferred is None:
            preferred = self._on_ring(key[0], ready)
        if self._outstanding[preferred] > self._outstanding[least] + self.affinity.busy_threshold:
            return least
        return preferred

    def _round_robin(self, ready: list[int]) -> int:
        total = 0.0
        for i in ready:
            self._current[i] += self.endpoints[i].weight
            total += self.endpoints[i].weight
        chosen = max(ready, key=lambda i: self._current[i])  # ties: the first listed
        self._current[chosen] -= total
        return chosen

    def _least_outstanding(self, ready: list[int]) -> int:
        return min(
            ready,
            key=lambda i: (self._outstanding[i] / self.endpoints[i].weight, self._last_pick[i]),
        )

    def _longest_match(self, key: PrefixKey, ready: list[int]) -> int | None:
        for digest in reversed(key):
            owner = self._learned.get(digest)
            if owner is not None and owner in ready:
                return owner
        return None

    def _on_ring(self, digest: bytes, ready: list[int]) -> int:
        start = bisect.bisect(self._ring_points, _point(digest))
        owners = self._ring_owners
        # the first point clockwise owned by a ready endpoint (every endpoint has points)
        return next(
            owners[(start + k) % len(owners)]
            for k in range(len(owners))
            if owners[(start + k) % len(owners)] in ready
        )

    def _learn(self, key: PrefixKey, i: int) -> None:
        learned = self._learned
        for digest in key:
            learned[digest] = i
            learned.move_to_end(digest)
        while len(learned) > self.affinity.remembered_blocks:
            learned.popitem(last=False)


# --- after a failed attempt -----------------------------------------------------------------


def moves_on(error: BaseException) -> bool:
    """Is this failure the endpoint's (down, timed out, overloaded, broken), so that another
    endpoint may well succeed? Connection errors, timeouts, 408, 429 and 5xx."""
    if isinstance(error, APIStatusError):
        return error.status_code in (408, 429) or error.status_code >= 500
    return isinstance(error, APIConnectionError)


@dataclass(frozen=True)
class NextAttempt:
    """Try again after ``delay`` seconds, on the same endpoint or on another."""

    delay: float
    same_endpoint: bool


def next_attempt(
    error: BaseException,
    retries_taken: int,
    policy: RetryPolicy,
    *,
    untried: bool,
    rand: float,
) -> NextAttempt | None:
    """What follows a failed attempt (rules in the module docstring); ``None``: give up.

    ``untried``: some endpoint that serves the call has not been tried by it yet. ``rand`` in
    [0, 1) is the backoff's jitter.

    >>> next_attempt(APIConnectionError("refused"), 0, RetryPolicy(), untried=True, rand=0.0)
    NextAttempt(delay=0.0, same_endpoint=False)
    """
    if retries_taken >= policy.max_retries:
        return None
    if isinstance(error, APIStatusError) and error.headers.get("x-should-retry") == "false":
        return None
    if moves_on(error) and untried:
        return NextAttempt(0.0, same_endpoint=False)  # another endpoint need not wait
    if not should_retry(error, policy):
        return None
    delay = retry_delay(error, retries_taken, policy, rand)
    return NextAttempt(delay, same_endpoint=not moves_on(error))
