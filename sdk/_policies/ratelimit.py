"""``RateLimiter``: requests-per-minute and tokens-per-minute limits, shared by all calls of
a client (its threads and its asyncio tasks alike).

The limiter keeps a ledger of what was sent in the last 60 seconds: one entry per HTTP
request, holding the tokens reserved for it. It is a token bucket whose spent tokens come
back exactly one window after they were spent, which is what makes the promise exact: *in
no 60-second window do the admitted requests exceed either limit* (a classic bucket that
refills continuously lets up to twice its size through in some windows).

* A call reserves ``prompt + max_tokens`` (times ``n``) before each attempt is sent; when the
  ledger has no room it is told how long to wait, and the client sleeps (with its own,
  injectable ``sleep``) and asks again.
* When the answer arrives, the reservation is replaced by the actual ``usage.total_tokens``
  (a refund); an attempt the server refused with an error status costs no tokens.
* A 429 with ``Retry-After`` pauses the whole limiter until then, so concurrent calls stop too.

Decisions only: no sleeping and no I/O here, and the clock is injected, so tests run a
simulated clock. The state is guarded by a ``threading.Lock`` that is never held across a
wait, which makes it safe from threads and from asyncio tasks.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sdk._exceptions import APIError, APIStatusError, RateLimitError, TokenRateLimitError

if TYPE_CHECKING:
    from sdk._protocol.actions import Flow

__all__ = ["RateLimiter", "Reservation"]

_EPSILON = 1e-9  # so float rounding never leaves an entry a hair short of expiring


@dataclass(eq=False)
class Reservation:
    """One admitted request in the ledger."""

    time: float
    tokens: int


class RateLimiter:
    """Client-side rate limits.

    >>> limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=40_000)
    >>> client = Client(rate_limiter=limiter)  # doctest: +SKIP

    A limiter may be shared by several clients (they then share the budget). ``clock`` is
    a monotonic time in seconds; tests pass a simulated one together with the client's
    ``sleep``. Token limits need the prompt counted, so with ``tokens_per_minute`` the client
    fetches each model's tokenizer once (see ``Client.tokenizer``).
    """

    def __init__(
        self,
        *,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        window: float = 60.0,
    ) -> None:
        for name, value in (
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an int >= 1 or None, got {value!r}")
        if not (math.isfinite(window) and window > 0):
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._ledger: deque[Reservation] = deque()
        self._tokens = 0  # sum of the ledger's tokens
        self._paused_until = -math.inf

    def __repr__(self) -> str:
        return (
            f"RateLimiter(requests_per_minute={self.requests_per_minute}, "
            f"tokens_per_minute={self.tokens_per_minute})"
        )

    # --- decisions ------------------------------------------------------------------------

    def try_reserve(self, tokens: int) -> Reservation | float:
        """Admit a request costing ``tokens`` now (a ``Reservation``), or say how many seconds
        to wait before asking again."""
        limit = self.tokens_per_minute
        if limit is not None and tokens > limit:
            raise TokenRateLimitError(
                f"this call needs {tokens} tokens (prompt + max_tokens) but the rate limit is "
                f"{limit} tokens per minute, so it could never be sent",
                prompt_tokens=None,
                max_tokens=None,
            )
        with self._lock:
            now = self._clock()
            self._expire(now)
            wait = self._wait(now, tokens)
            if wait > 0:
                return wait
            reservation = Reservation(now, tokens)
            self._ledger.append(reservation)
            self._tokens += tokens
            return reservation

    def settle(self, reservation: Reservation, tokens: int) -> None:
        """Replace what ``reservation`` holds by the tokens actually used."""
        with self._lock:
            if reservation in self._ledger:  # identity: Reservation has eq=False
                self._tokens += tokens - reservation.tokens
            reservation.tokens = tokens

    def pause(self, seconds: float) -> None:
        """Admit nothing for ``seconds`` (a server's ``Retry-After``)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def usage(self) -> tuple[int, int]:
        """(requests, tokens) admitted in the current window."""
        with self._lock:
            self._expire(self._clock())
            return len(self._ledger), self._tokens

    def _expire(self, now: float) -> None:
        while self._ledger and self._ledger[0].time <= now - self.window + _EPSILON:
            self._tokens -= self._ledger.popleft().tokens

    def _wait(self, now: float, tokens: int) -> float:
        waits = [self._paused_until - now]
        rpm = self.requests_per_minute
        if rpm is not None and len(self._ledger) >= rpm:
            # the request that must leave the window before another fits
            waits.append(self._ledger[len(self._ledger) - rpm].time + self.window - now)
        tpm = self.tokens_per_minute
        if tpm is not None and self._tokens + tokens > tpm:
            excess = self._tokens + tokens - tpm
            for entry in self._ledger:
                excess -= entry.tokens
                if excess <= 0:
                    waits.append(entry.time + self.window - now)
                    break
        return max(waits)

    # --- the flow side ----------------------------------------------------------------------

    def attempt_hooks(self, tokens: int, reserved: Reservation | None = None) -> LimiterHooks:
        """The hooks a call flow runs around each attempt (``sdk._protocol.flow.AttemptHooks``);
        ``reserved``: room already taken (``try_reserve``) for the first attempt."""
        return LimiterHooks(self, tokens, reserved)


class LimiterHooks:
    """Reserve before each attempt, settle after it: ``AttemptHooks`` for the call flows."""

    def __init__(
        self, limiter: RateLimiter, tokens: int, reserved: Reservation | None = None
    ) -> None:
        self._limiter = limiter
        self._tokens = tokens
        self._reservation = reserved

    def before_attempt(self) -> Flow[None]:
        from sdk._protocol.actions import Sleep

        while self._reservation is None:  # None: not taken ahead
            admitted = self._limiter.try_reserve(self._tokens)
            if isinstance(admitted, Reservation):
                self._reservation = admitted
            else:
                yield Sleep(admitted)

    def after_attempt(self, result: object, error: APIError | None) -> None:
        reservation, self._reservation = self._reservation, None
        if reservation is None:
            return
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            self._limiter.pause(error.retry_after)
        if isinstance(error, APIStatusError):
            # The server refused the request: it used no tokens. (A connection error may
            # have happened after the server did the work, so that keeps its reservation.)
            self._limiter.settle(reservation, 0)
            return
        usage = getattr(result, "usage", None)
        total = getattr(usage, "total_tokens", None)
        if isinstance(total, int):
            self._limiter.settle(reservation, total)
