"""Routing decisions for a ``Router``: which endpoint takes the next attempt of a call.

Pure state: no I/O, no sleeping, and the clock is injected, so tests run a simulated one.
``Routing`` is shared by every call of a router (threads and asyncio tasks alike); its lock is
only held for bookkeeping, never across a wait. What follows a failed attempt is decided in
``failover``; what prefix affinity remembers lives in ``prefix``.

Strategies (``Routing.pick``):

* ``round_robin`` — smooth weighted round robin (nginx's): an endpoint of weight 2 gets twice
  the calls of one of weight 1, interleaved rather than in bursts.
* ``least_outstanding`` — the fewest calls in flight per unit of weight (a stream is in flight
  until it ends); ties go to the endpoint picked least recently.
* ``prefix_affinity`` — calls whose prompts share a prefix go where that prefix went before, so
  the server's prefix cache (vLLM's, server_ref's) already holds its keys and values: the
  endpoint that took the longest known prefix, else the prefix's place on a consistent-hash
  ring (``prefix.PrefixMap``). When that endpoint is busy beyond
  ``AffinityPolicy.busy_threshold`` calls more than the least loaded one, or cooling down,
  the least loaded one takes the call, and the prefix follows it.

Health: ``HealthPolicy.failures`` consecutive failures (``failover.moves_on``: the endpoint
was down, overloaded or broken) start a cooldown of ``HealthPolicy.cooldown`` seconds, during
which the endpoint gets no calls while another can take them; a 429's ``Retry-After`` keeps
it out at least that long. After a cooldown the next failure starts another at once; a
success resets the count. When every endpoint is cooling down, the one back soonest is tried
anyway.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias, get_args

from .._exceptions import NoEndpointError, RouterConfigError
from .prefix import AffinityPolicy, PrefixKey, PrefixMap

__all__ = [
    "STRATEGIES",
    "EndpointStatus",
    "HealthPolicy",
    "Routable",
    "Routing",
    "Strategy",
]

Strategy: TypeAlias = Literal["round_robin", "least_outstanding", "prefix_affinity"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


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
class EndpointStatus:
    """One endpoint as the router sees it now (``router.endpoint_status()``)."""

    name: str
    outstanding: int  # calls in flight (streams until they end)
    consecutive_failures: int
    cooldown_left: float  # seconds until it takes calls again; 0.0 when it does
    picks: int  # attempts sent to it so far
    failures: int  # of which failed (``moves_on``)


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
        self.prefixes = PrefixMap([(e.name, e.weight) for e in endpoints], self.affinity)

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
            self.prefixes.learn(key, chosen)
        return chosen

    def _choose(self, ready: list[int], key: PrefixKey) -> int:
        if self.strategy == "round_robin":
            return self._round_robin(ready)
        least = self._least_outstanding(ready)
        if self.strategy == "least_outstanding" or not key:
            return least
        preferred = self.prefixes.longest_match(key, ready)
        if preferred is None:
            preferred = self.prefixes.on_ring(key[0], ready)
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
