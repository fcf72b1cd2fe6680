"""Token budgets: make a call fit the context window before it is sent, or refuse it.

Pure decisions, no I/O. A *planner* is a generator that yields what it needs counted (a list
of chat messages, or a prompt string) and receives the token count back; the driver answers
from a local tokenizer (:func:`fit_messages`, :func:`fit_prompt`) or from the server's
``/tokenize`` (``sdk._policies.guard``). So one planner serves exact local counts, estimates
and remote counts alike.

The rules, in order:

1. ``prompt + max_tokens <= context_length``: the call goes out unchanged. Without
   ``max_tokens`` the server gives the reply whatever is left, so the prompt must leave
   ``min_completion_tokens``.
2. ``clamp_max_tokens``: ``max_tokens`` is lowered to what is left, as long as that is at
   least ``min_completion_tokens``.
3. the ``trim`` policies, in the order given, until the prompt fits:
   ``"drop_oldest"`` removes the oldest turns but always keeps the leading system message(s)
   and everything from the last user message on; ``"truncate_middle"`` cuts the middle out
   of the longest message (or of a completion prompt), leaving ``truncation_marker``.
4. otherwise ``ContextWindowExceededError``, naming the counts, and nothing is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from sdk._exceptions import ContextWindowExceededError, TokenBudgetError
from sdk.tokens.trim import drop_oldest, shrink_text, truncate_longest

if TYPE_CHECKING:
    from sdk.tokens.tokenizer import Tokenizer

__all__ = [
    "BudgetPlan",
    "Counter",
    "Planner",
    "TokenBudget",
    "TrimPolicy",
    "fit_messages",
    "fit_prompt",
    "plan_chat",
    "plan_counted",
    "plan_prompt",
]

TrimPolicy = Literal["drop_oldest", "truncate_middle"]
_POLICIES = frozenset({"drop_oldest", "truncate_middle"})

Messages: TypeAlias = list[dict[str, Any]]
CountRequest: TypeAlias = Messages | str  # chat messages, or a completion prompt
Planner: TypeAlias = Generator[CountRequest, int, "BudgetPlan"]
Counter: TypeAlias = Callable[[CountRequest], int]


@dataclass(frozen=True)
class TokenBudget:
    """How a client checks calls against the context window before sending them.

    >>> client = Client(token_budget=TokenBudget())  # doctest: +SKIP  (refuse what won't fit)
    >>> client = Client(token_budget=TokenBudget(trim="drop_oldest", clamp_max_tokens=True))
    ... # doctest: +SKIP

    ``context_length`` overrides the window the server (or the hosted-model table) reports;
    it is required for servers that report none.
    """

    trim: TrimPolicy | tuple[TrimPolicy, ...] = ()
    clamp_max_tokens: bool = False
    min_completion_tokens: int = 1
    context_length: int | None = None
    truncation_marker: str = "\n…\n"

    def __post_init__(self) -> None:
        trim = (self.trim,) if isinstance(self.trim, str) else tuple(self.trim)
        bad = [p for p in trim if p not in _POLICIES]
        if bad:
            raise ValueError(f"unknown trim policy {bad[0]!r}; use {sorted(_POLICIES)}")
        object.__setattr__(self, "trim", trim)
        if not isinstance(self.min_completion_tokens, int) or self.min_completion_tokens < 1:
            raise ValueError(
                f"min_completion_tokens must be an int >= 1, got {self.min_completion_tokens!r}"
            )
        if self.context_length is not None and (
            not isinstance(self.context_length, int) or self.context_length < 1
        ):
            raise ValueError(f"context_length must be an int >= 1, got {self.context_length!r}")

    @property
    def policies(self) -> tuple[TrimPolicy, ...]:
        return self.trim if isinstance(self.trim, tuple) else (self.trim,)


@dataclass(frozen=True)
class BudgetPlan:
    """What to send: the (possibly trimmed) prompt, its count and the ``max_tokens`` to ask."""

    prompt_tokens: int
    max_tokens: int | None  # None: the caller set none (the server fills the window)
    context_length: int
    messages: Messages | None = None
    prompt: str | None = None
    trimmed: tuple[str, ...] = field(default=())  # the policies that changed the prompt

    @property
    def completion_room(self) -> int:
        """The most completion tokens this prompt leaves in the window."""
        return self.context_length - self.prompt_tokens


def plan_chat(
    messages: Sequence[Mapping[str, Any]],
    *,
    max_tokens: int | None,
    context_length: int,
    budget: TokenBudget,
    exact: bool = True,
) -> Planner:
    """Plan a chat call (see the module docstring for the rules)."""
    current: Messages = [dict(m) for m in messages]
    tokens = yield current
    target = context_length - _room_needed(max_tokens, budget)
    used: list[str] = []
    for policy in budget.policies:
        if tokens <= target:
            break
        if policy == "drop_oldest":
            current, tokens = yield from drop_oldest(current, tokens, target)
        else:
            current, tokens = yield from truncate_longest(
                current, tokens, target, budget.truncation_marker
            )
        used.append(policy)
    if tokens > target:
        raise _exceeded(tokens, max_tokens, context_length, budget, exact, used, "messages")
    return BudgetPlan(
        tokens,
        _max_tokens_to_send(tokens, max_tokens, context_length, budget),
        context_length,
        messages=current,
        trimmed=tuple(used),
    )


def plan_prompt(
    prompt: str,
    *,
    max_tokens: int | None,
    context_length: int,
    budget: TokenBudget,
    exact: bool = True,
) -> Planner:
    """Plan a completion call with one text prompt (only ``truncate_middle`` applies)."""
    tokens = yield prompt
    target = context_length - _room_needed(max_tokens, budget)
    used: list[str] = []
    if tokens > target and "truncate_middle" in budget.policies:
        prompt, tokens = yield from shrink_text(
            prompt, tokens, target, budget.truncation_marker, lambda text: text
        )
        used.append("truncate_middle")
    if tokens > target:
        raise _exceeded(tokens, max_tokens, context_length, budget, exact, used, "prompt")
    return BudgetPlan(
        tokens,
        _max_tokens_to_send(tokens, max_tokens, context_length, budget),
        context_length,
        prompt=prompt,
        trimmed=tuple(used),
    )


def plan_counted(
    tokens: int,
    *,
    max_tokens: int | None,
    context_length: int,
    budget: TokenBudget,
    exact: bool = True,
) -> BudgetPlan:
    """Plan a prompt that is already token ids (``tokens`` of them): check and clamp only."""
    if tokens > context_length - _room_needed(max_tokens, budget):
        raise _exceeded(tokens, max_tokens, context_length, budget, exact, [], "prompt")
    return BudgetPlan(
        tokens, _max_tokens_to_send(tokens, max_tokens, context_length, budget), context_length
    )


# --- drivers for a local counter --------------------------------------------------------------


def drive(planner: Planner, count: Counter) -> BudgetPlan:
    """Run a planner, answering every count request with ``count``."""
    try:
        request = next(planner)
        while True:
            request = planner.send(count(request))
    except StopIteration as stop:
        result: BudgetPlan = stop.value
        return result


def fit_messages(
    tokenizer: Tokenizer,
    messages: Sequence[Mapping[str, Any]],
    *,
    max_tokens: int | None = None,
    budget: TokenBudget | None = None,
) -> BudgetPlan:
    """Fit chat ``messages`` into ``tokenizer``'s context window locally, sending nothing.

    >>> plan = fit_messages(tok, history, max_tokens=256, budget=TokenBudget(trim="drop_oldest"))
    ... # doctest: +SKIP
    >>> plan.messages, plan.prompt_tokens  # doctest: +SKIP
    """
    budget = budget or TokenBudget()
    context = _context_length(budget, tokenizer.context_length, tokenizer.model)
    planner = plan_chat(
        messages,
        max_tokens=max_tokens,
        context_length=context,
        budget=budget,
        exact=tokenizer.exact,
    )
    return drive(planner, lambda request: _count_local(tokenizer, request))


def fit_prompt(
    tokenizer: Tokenizer,
    prompt: str,
    *,
    max_tokens: int | None = None,
    budget: TokenBudget | None = None,
) -> BudgetPlan:
    """``fit_messages`` for a completion prompt."""
    budget = budget or TokenBudget()
    context = _context_length(budget, tokenizer.context_length, tokenizer.model)
    planner = plan_prompt(
        prompt, max_tokens=max_tokens, context_length=context, budget=budget, exact=tokenizer.exact
    )
    return drive(planner, lambda request: _count_local(tokenizer, request))


def _count_local(tokenizer: Tokenizer, request: CountRequest) -> int:
    if isinstance(request, str):
        return tokenizer.count(request)
    return tokenizer.count_chat(request)


def _context_length(budget: TokenBudget, reported: int | None, model: str) -> int:
    context = budget.context_length or reported
    if context is None:
        raise TokenBudgetError(
            f"the context window of {model!r} is unknown (the server does not report it); "
            "pass TokenBudget(context_length=...) to check calls against it"
        )
    return context


# --- the rules ---------------------------------------------------------------------------------


def _room_needed(max_tokens: int | None, budget: TokenBudget) -> int:
    if max_tokens is None:
        return budget.min_completion_tokens
    if budget.clamp_max_tokens:
        return min(max_tokens, budget.min_completion_tokens)
    return max_tokens


def _max_tokens_to_send(
    prompt_tokens: int, max_tokens: int | None, context_length: int, budget: TokenBudget
) -> int | None:
    """``max_tokens``, lowered to the room left when clamping is on (the prompt fits)."""
    if max_tokens is None or not budget.clamp_max_tokens:
        return max_tokens
    return min(max_tokens, context_length - prompt_tokens)


def _exceeded(
    prompt_tokens: int,
    max_tokens: int | None,
    context_length: int,
    budget: TokenBudget,
    exact: bool,
    tried: list[str],
    what: str,
) -> ContextWindowExceededError:
    wanted = _room_needed(max_tokens, budget)
    counted = "" if exact else " (estimated)"
    message = (
        f"the {what} need {prompt_tokens} tokens{counted} and the completion {wanted}, "
        f"but the context window is {context_length} tokens"
    )
    if tried:
        message += f"; still too long after {' then '.join(tried)}"
        if "drop_oldest" in tried:
            message += " (the system message and the last user turn are always kept)"
    elif not budget.policies:
        message += "; pass TokenBudget(trim=...) or clamp_max_tokens=True to make it fit"
    return ContextWindowExceededError(
        message + ". Nothing was sent.",
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        context_length=context_length,
        exact=exact,
    )
