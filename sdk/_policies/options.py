"""What a client adds around the HTTP core: its policies and their options.

``Policies`` is the client-wide part (one token budget, one rate limiter, the tokenizers
fetched so far), shared by a client and its ``with_options`` copies; ``PolicyOptions`` is
the per-call part (``budget=``). The core's ``ClientOptions`` / ``RequestOptions`` know
nothing of either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

from sdk._protocol.options import ClientOptions, RequestOptions
from sdk.tokens.budget import TokenBudget

from .ratelimit import RateLimiter
from .registry import TokenizerRegistry

__all__ = [
    "CallOptions",
    "ClientSettings",
    "Policies",
    "PolicyOptions",
    "split_policy_options",
]


class PolicySettings(TypedDict, total=False):
    token_budget: TokenBudget | None
    rate_limiter: RateLimiter | None


class ClientSettings(ClientOptions, PolicySettings, total=False):
    """Everything ``Client(...)`` / ``with_options(...)`` accept besides the HTTP plumbing."""


class PolicyOptions(TypedDict, total=False):
    """Per-call policy overrides.

    ``budget`` replaces the client's ``token_budget`` for one chat or completion call
    (``None`` turns the check off); other calls ignore it.
    """

    budget: TokenBudget | None


class CallOptions(RequestOptions, PolicyOptions, total=False):
    """Per-call overrides accepted by every resource method.

    >>> client.models.list(timeout=2.0, max_retries=0)  # doctest: +SKIP
    """


_POLICY_OPTION_KEYS = frozenset(PolicyOptions.__annotations__)


def split_policy_options(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], PolicyOptions]:
    """Take the policy options out of a resource method's keyword arguments."""
    rest = {k: v for k, v in kwargs.items() if k not in _POLICY_OPTION_KEYS}
    options = {k: v for k, v in kwargs.items() if k in _POLICY_OPTION_KEYS}
    return rest, cast(PolicyOptions, options)


@dataclass(frozen=True)
class Policies:
    """A client's policies; copies made by ``with_options`` share the limiter and registry."""

    token_budget: TokenBudget | None = None
    rate_limiter: RateLimiter | None = None
    tokenizers: TokenizerRegistry = field(default_factory=TokenizerRegistry)

    def updated(self, changes: PolicySettings) -> Policies:
        return Policies(
            token_budget=changes.get("token_budget", self.token_budget),
            rate_limiter=changes.get("rate_limiter", self.rate_limiter),
            tokenizers=self.tokenizers,
        )

    def budget_for(self, options: PolicyOptions) -> TokenBudget | None:
        return options.get("budget", self.token_budget)
