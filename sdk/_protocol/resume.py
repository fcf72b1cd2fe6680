"""Resuming a stream that broke after its first chunks, when its output is reproducible.

A stream that fails before its first event is retried like any call (``flow.stream_flow``).
After chunks reached the caller, a retry would repeat them, so it is only safe when the
server will send the same chunks again: greedy decoding (``temperature`` 0) or a ``seed``,
on a server that then answers the same way twice (ours does: a sequence's output does not
depend on the batch it ran in). Hosted services often do not, which the check below catches.
Then the SDK sends the request again (same idempotency key, the same retry budget and
backoff), checks that the replay's first chunks are the ones already delivered (their
choices, byte for byte: ids and timestamps differ between requests), skips them, and hands on
the rest. A replay that differs, a failure that is not worth retrying (``should_retry``) or
an exhausted budget ends the stream with the error that broke it, as without resuming.

This is what lets a deployment lose a replica mid-stream (Ray Serve restarting it) without
the caller seeing an error. ``RetryPolicy(resume_streams=False)`` turns it off.

>>> reproducible({"temperature": 0, "messages": []})
True
>>> reproducible({"messages": []})  # the server samples at temperature 1
False
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._exceptions import APIError
from .actions import Close, Flow, Sleep
from .options import RequestOptions, RetryPolicy
from .retry import logger, retry_delay, should_retry

if TYPE_CHECKING:
    from .flow import StreamStart

__all__ = ["Replay", "Resume", "reproducible", "resumes"]


def reproducible(body: Mapping[str, object]) -> bool:
    """Whether a request asks for output that a second request reproduces exactly."""
    return body.get("temperature") == 0 or body.get("seed") is not None


def resumes(
    policy: RetryPolicy, body: Mapping[str, object] | None, options: RequestOptions
) -> bool:
    """Whether a stream call sent with this body and these options is resumed if it breaks."""
    sent = {**(body or {}), **options.get("extra_body", {})}
    return policy.resume_streams and reproducible(sent)


def digest(chunk: Any) -> bytes:
    """What must match between a delivered chunk and its replay: the choices, not the ids."""
    choices = "\0".join(choice.model_dump_json() for choice in chunk.choices)
    return hashlib.blake2b(choices.encode(), digest_size=16).digest()


class Diverged(Exception):
    """A replayed chunk differs from the one delivered at its place (internal signal)."""


@dataclass
class Replay:
    """The delivered chunks' digests, and how far a replay has repeated them."""

    enabled: bool = True  # False: the stream cannot be resumed, so nothing is recorded
    delivered: list[bytes] = field(default_factory=list)
    position: int | None = None  # None: not replaying

    def restart(self) -> None:
        """A new response begins: its first chunks must be the delivered ones."""
        self.position = 0

    def behind(self) -> bool:
        """Whether a replay has not yet repeated every delivered chunk."""
        return self.position is not None and self.position < len(self.delivered)

    def deliver(self, chunk: Any) -> bool:
        """Whether ``chunk`` goes to the caller (else it repeats one already delivered).

        Raises ``Diverged`` if it should repeat one and does not.
        """
        if not self.behind():
            self.position = None
            if self.enabled:
                self.delivered.append(digest(chunk))
            return True
        assert self.position is not None
        if digest(chunk) != self.delivered[self.position]:
            raise Diverged
        self.position += 1
        return False


@dataclass
class Resume:
    """How to open a broken stream again: ``reopen(error, retries used, retries left)`` runs
    the call's retry loop again (``flow.stream_flow``'s, or a ``Router``'s with failover),
    with the call's idempotency key, and returns the new start."""

    policy: RetryPolicy
    reopen: Callable[[APIError, int, int], Flow[StreamStart[Any, Any]]]
    retries_used: int
    rand: Callable[[], float] = random.random

    def again(
        self, broken: StreamStart[Any, Any], error: APIError, delivered: int
    ) -> Flow[StreamStart[Any, Any]]:
        """Close ``broken`` and open the stream again, or raise ``error`` if that is not allowed."""
        yield Close(broken.response)
        left = self.policy.max_retries - self.retries_used
        if left <= 0 or not should_retry(error, self.policy):
            raise error
        delay = retry_delay(error, self.retries_used, self.policy, self.rand())
        logger.info(
            "resuming a stream after %d chunks in %.2f s (retry %d of %d) after: %s",
            delivered,
            delay,
            self.retries_used + 1,
            self.policy.max_retries,
            error,
        )
        yield Sleep(delay)
        self.retries_used += 1
        start = yield from self.reopen(error, self.retries_used, left - 1)
        self.retries_used = start.info.retries_taken
        return start
