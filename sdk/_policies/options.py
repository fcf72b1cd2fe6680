"""What a client adds around the HTTP core: its policies and their options.

``Policies`` is the client-wide part (one token budget, one rate limiter, the tokenizers
fetched so far), shared by a client and its ``with_options`` copies; ``PolicyOptions`` is
the per-call part (``budget=``). The core's ``ClientOptions`` / ``RequestOptions`` know
nothing of either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypedDict, cast

from sdk._protocol.options import ClientOptions, RequestOptions
from sdk.tokens.budget import TokenBudget

from .ratelimit import RateLimiter
from .registry import TokenizerRegistry

if TYPE_CHECKING:
    from .hooks import CallHooks

__all__ = [
    "AUTO",
    "BudgetSetting",
    "CallOptions",
    "ClientSettings",
    "Policies",
    "PolicyOptions",
    "hooks_tuple",
    "split_policy_options",
]


AUTO: Literal["auto"] = "auto"
# "auto" (the default): check calls against the context window only where the count is
# exact and free, i.e. the client already holds the model's own tokenizer (see guard.py)
BudgetSetting: TypeAlias = TokenBudget | Literal["auto"] | None
HooksSetting: TypeAlias = "CallHooks | Sequence[CallHooks] | None"


class PolicySettings(TypedDict, total=False):
    token_budget: BudgetSetting
    rate_limiter: RateLimiter | None
    hooks: HooksSetting


class ClientSettings(ClientOptions, PolicySettings, total=False):
    """Everything ``Client(...)`` / ``with_options(...)`` accept besides the HTTP plumbing."""


class PolicyOptions(TypedDict, total=False):
    """Per-call policy overrides.

    ``budget`` replaces the client's ``token_budget`` for one chat or completion call
    (a ``TokenBudget``, ``"auto"``, or ``None`` to turn the check off); other calls ignore it.
    """

    budget: BudgetSetting


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

    token_budget: BudgetSetting = AUTO
    rate_limiter: RateLimiter | None = None
    tokenizers: TokenizerRegistry = field(default_factory=TokenizerRegistry)
    hooks: tuple[CallHooks, ...] = ()

    def updated(self, changes: PolicySettings) -> Policies:
        return Policies(
            token_budget=changes.get("token_budget", self.token_budget),
            rate_limiter=changes.get("rate_limiter", self.rate_limiter),
            tokenizers=self.tokenizers,
            hooks=hooks_tuple(changes["hooks"]) if "hooks" in changes else self.hooks,
        )

    def budget_for(self, options: PolicyOptions) -> BudgetSetting:
        budget = options.get("budget", self.token_budget)
        if not (budget is None or budget == AUTO or isinstance(budget, TokenBudget)):
            raise ValueError(f"a token budget is a TokenBudget, 'auto' or None, got {budget!r}")
        return budget


def hooks_tuple(hooks: HooksSetting) -> tuple[CallHooks, ...]:
    """``hooks=`` as given (one, several or ``None``) as a tuple, each checked."""
    if hooks is None:
        return ()
    many = tuple(hooks) if isinstance(hooks, Sequence) else (hooks,)
    for hook in many:
        if not callable(getattr(hook, "start_call", None)):
            raise TypeError(
                f"hooks must be sdk.Hooks, sdk.otel.OpenTelemetryHooks or another object with "
                f"start_call(call), got {hook!r}"
            )
    return many
