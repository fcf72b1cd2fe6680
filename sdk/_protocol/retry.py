"""Retry decisions: which failures to retry, how long to wait, and the tenacity controller.

Rules, in the order they are checked (the same as openai-python's ``_should_retry``, plus a
hard cap on server-requested delays):

1. ``x-should-retry: false`` from the server: never retry.
2. The server asks for a longer wait than ``RetryPolicy.max_retry_after``: do not retry;
   retrying earlier than asked is rude, and waiting minutes inside a call is a surprise.
   The error's ``retry_after`` tells the caller how long the server wanted.
3. ``x-should-retry: true``: retry.
4. 408 (timeout), 409 (lock conflict), 429 (rate limit / overload) and any 5xx: retry.
5. Connection errors and timeouts (``APIConnectionError``): retry. Other errors: never.

The delay is the server's ``retry-after-ms`` / ``Retry-After`` when present (and allowed by
rule 2), otherwise exponential backoff with jitter.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime

import tenacity

from .._exceptions import APIConnectionError, APIStatusError
from .options import RetryPolicy

__all__ = ["backoff_delay", "new_retrying", "parse_retry_after", "retry_delay", "should_retry"]

logger = logging.getLogger("sdk")

RETRYABLE_STATUSES = frozenset({408, 409, 429})


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3); ``now`` is
    the current Unix time, used for the date form. A date in the past means "now" (0.0).
    Unparseable or negative values are ignored.

    >>> parse_retry_after({"retry-after": "2"}, now=0.0)
    2.0
    """
    # Not in any RFC, but OpenAI and Anthropic send it and it is more precise.
    millis = _non_negative_float(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative_float(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _non_negative_float(value: str | None) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def should_retry(error: BaseException, policy: RetryPolicy) -> bool:
    """Whether a failed attempt is worth retrying (rules in the module docstring)."""
    if isinstance(error, APIStatusError):
        hint = error.headers.get("x-should-retry")
        if hint == "false":
            return False
        if error.retry_after is not None and error.retry_after > policy.max_retry_after:
            return False
        if hint == "true":
            return True
        return error.status_code in RETRYABLE_STATUSES or error.status_code >= 500
    return isinstance(error, APIConnectionError)


def backoff_delay(retries_taken: int, policy: RetryPolicy, rand: float) -> float:
    """``initial_delay * 2**retries_taken`` capped at ``max_delay``, shortened by jitter.

    ``rand`` is a number in [0, 1); jitter keeps many clients that failed together from
    retrying together.
    """
    base = min(policy.initial_delay * 2.0 ** min(retries_taken, 64), policy.max_delay)
    return base * (1.0 - policy.jitter * rand)


def retry_delay(
    error: BaseException, retries_taken: int, policy: RetryPolicy, rand: float
) -> float:
    """Seconds to sleep before the next attempt: the server's wish, else backoff."""
    if isinstance(error, APIStatusError) and error.retry_after is not None:
        return error.retry_after
    return backoff_delay(retries_taken, policy, rand)


def new_retrying(
    policy: RetryPolicy, describe: str, rand: Callable[[], float] = random.random
) -> tenacity.Retrying:
    """A tenacity controller for one call, used only for its decisions (``Retrying.iter``).

    The caller drives it and performs the sleeps itself, so the same controller serves the
    sync and the async client; ``describe`` (e.g. ``"POST /chat/completions"``) goes into the
    log line. The original exception is re-raised when retries are exhausted.
    """

    def wait(state: tenacity.RetryCallState) -> float:
        return retry_delay(_failure(state), state.attempt_number - 1, policy, rand())

    def log(state: tenacity.RetryCallState) -> None:
        logger.info(
            "retrying %s in %.2f s (retry %d of %d) after: %s",
            describe,
            state.upcoming_sleep,
            state.attempt_number,
            policy.max_retries,
            _failure(state),
        )

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.max_retries + 1),
        retry=tenacity.retry_if_exception(lambda exc: should_retry(exc, policy)),
        wait=wait,
        before_sleep=log,
        reraise=True,
    )


def _failure(state: tenacity.RetryCallState) -> BaseException:
    # tenacity only waits (and logs) after a failed attempt, so there is always an exception.
    error = state.outcome.exception() if state.outcome is not None else None
    assert error is not None
    return error
