"""After a failed attempt of a routed call: was it the endpoint's fault, and what next.

Failover (``next_attempt``): a failure that ``moves_on`` (the endpoint was down, timed out,
overloaded or broken) goes to an endpoint this call has not tried yet, at once; once all
were tried, the retry policy's backoff applies. Other retryable failures (409: the server
still works on the same idempotency key) retry the same endpoint. Client errors (4xx but
408 and 429) are final. The attempts of a call share one idempotency key and
``RetryPolicy.max_retries`` bounds them all, whichever endpoint they go to.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._exceptions import APIConnectionError, APIStatusError
from .options import RetryPolicy
from .retry import retry_delay, should_retry

__all__ = ["NextAttempt", "moves_on", "next_attempt"]


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
