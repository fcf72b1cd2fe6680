"""Token budgets and rate limits in front of chat and completion calls (a sans-I/O flow).

``guarded_call_flow`` / ``guarded_stream_flow`` are what the clients run for every call.
Without a budget or a rate limiter they are exactly ``call_flow`` / ``stream_flow``: no
tokenizer, no counting, no extra request.

The default budget, ``"auto"``, is a ``TokenBudget()`` (refuse what cannot fit) for models
whose own tokenizer the client already holds (fetched by ``client.tokenizer()``,
``count_tokens``, or an explicit budget or limiter before, or given to
``client.register_tokenizer``) and counts this call exactly (``Tokenizer.exact_for``): there
the count is exact and costs no round trip. For any other call it is no budget at all: the
call goes out and the server decides (an estimate never refuses a call on its own).

With a budget or a limiter, a chat or completion call is counted first (``counting``: the
model's tokenizer is fetched once per client), planned (``sdk.tokens.budget``: sent as is,
``max_tokens`` clamped, trimmed, or ``ContextWindowExceededError`` with nothing sent), and
every attempt passes the rate limiter (``ratelimit``).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from sdk._exceptions import InvalidRequestParamsError, TokenBudgetError
from sdk._protocol.flow import AttemptHooks, Flow, StreamStart, call_flow, stream_flow
from sdk._protocol.options import ClientConfig, RequestOptions
from sdk._protocol.request import APICall
from sdk.tokens.budget import (
    BudgetPlan,
    Planner,
    TokenBudget,
    plan_chat,
    plan_counted,
    plan_prompt,
)
from sdk.types import APIObject

from .counting import CHAT_OPTIONS, Counter, counter_flow
from .options import BudgetSetting, Policies, PolicyOptions
from .ratelimit import RateLimiter, Reservation

__all__ = ["PlannedCall", "guarded_call_flow", "guarded_stream_flow", "plan_call"]

T = TypeVar("T", bound=APIObject)

_CHAT, _COMPLETION = "/chat/completions", "/completions"


def guarded_call_flow(
    config: ClientConfig,
    policies: Policies,
    call: APICall[T],
    options: RequestOptions,
    policy_options: PolicyOptions,
) -> Flow[T]:
    """``call_flow`` behind the client's token budget and rate limiter, when it has them."""
    if not _guarded(policies, policy_options):
        return (yield from call_flow(config, call, options))
    planned = yield from plan_call(config, policies, call, policy_options)
    return (yield from call_flow(config, planned.call, options, hooks=planned.hooks()))


def guarded_stream_flow(
    config: ClientConfig,
    policies: Policies,
    call: APICall[T],
    options: RequestOptions,
    policy_options: PolicyOptions,
) -> Flow[StreamStart[T, Any]]:
    """``stream_flow`` behind the client's token budget and rate limiter, when it has them.

    A stream's reservation is not refunded: its usage is only known when it has been read.
    """
    if not _guarded(policies, policy_options):
        return (yield from stream_flow(config, call, options))
    planned = yield from plan_call(config, policies, call, policy_options)
    return (yield from stream_flow(config, planned.call, options, hooks=planned.hooks()))


@dataclass
class PlannedCall(Generic[T]):
    """A call as the policies let it go: its body (trimmed, clamped), the tokens each attempt
    reserves and the limiter they are reserved with."""

    call: APICall[T]
    tokens: int = 0
    limiter: RateLimiter | None = None
    reservation: Reservation | None = None  # taken ahead by ``reserve``

    def reserve(self) -> float:
        """Take the limiter's room for the first attempt now: ``0.0`` when admitted, else the
        seconds until it could be (nothing is taken then). A router asks before it commits
        to an endpoint, so that a call goes where there is room instead of waiting."""
        if self.limiter is None:
            return 0.0
        admitted = self.limiter.try_reserve(self.tokens)
        if isinstance(admitted, Reservation):
            self.reservation = admitted
            return 0.0
        return admitted

    def hooks(self) -> AttemptHooks | None:
        if self.limiter is None:
            return None
        return self.limiter.attempt_hooks(self.tokens, reserved=self.reservation)


def plan_call(
    config: ClientConfig, policies: Policies, call: APICall[T], options: PolicyOptions
) -> Flow[PlannedCall[T]]:
    """Count and plan ``call`` against the budget; ``PlannedCall(call)`` when nothing applies."""
    if not _guarded(policies, options):
        return PlannedCall(call)
    budget = _effective_budget(config, policies, call, policies.budget_for(options))
    limiter = policies.rate_limiter
    counted = call.path in (_CHAT, _COMPLETION) and call.body is not None
    needs_count = counted and (
        budget is not None or (limiter is not None and limiter.tokens_per_minute is not None)
    )
    reserve = 0
    if needs_count:
        assert call.body is not None
        body, reserve = yield from _plan(config, policies, call.path, dict(call.body), budget)
        call = replace(call, body=body)
    return PlannedCall(call, reserve, limiter)


def _guarded(policies: Policies, options: PolicyOptions) -> bool:
    return policies.rate_limiter is not None or policies.budget_for(options) is not None


def _effective_budget(
    config: ClientConfig, policies: Policies, call: APICall[Any], budget: BudgetSetting
) -> TokenBudget | None:
    """``"auto"`` resolved for this call (see the module docstring)."""
    if budget is None or isinstance(budget, TokenBudget):
        return budget
    model = call.body.get("model") if call.body is not None else None
    if not isinstance(model, str):
        return None
    held = policies.tokenizers.get(str(config.root_url), model)
    if held is None:
        return None
    assert call.body is not None  # it names a model
    body: dict[str, Any] = dict(call.body)
    if call.path == _CHAT:
        options = {k: body[k] for k in CHAT_OPTIONS if body.get(k) is not None}
        exact = held.exact_for(body.get("messages") or [], **options)
    else:
        exact = held.exact_for()
    return TokenBudget() if exact else None


def _plan(
    config: ClientConfig,
    policies: Policies,
    path: str,
    body: dict[str, Any],
    budget: TokenBudget | None,
) -> Flow[tuple[dict[str, Any], int]]:
    """The body to send (trimmed, clamped) and the tokens the call may use in all."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestParamsError(
            "a token budget or a tokens-per-minute limit needs to know the model: pass model=..."
        )
    counter = yield from counter_flow(config, policies.tokenizers, model, body)
    max_key = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    )
    max_tokens: int | None = body.get(max_key)
    choices = int(body.get("n") or 1)

    if path == _CHAT:
        first = yield from counter.count(body["messages"])
        plans = [(yield from _run(counter, first, budget, max_tokens, chat=body["messages"]))]
        if plans[0].messages is not None:
            body["messages"] = plans[0].messages
    else:
        prompts, shape = _prompts(body["prompt"])
        plans = []
        for prompt in prompts:
            first = len(prompt) if isinstance(prompt, list) else (yield from counter.count(prompt))
            plans.append((yield from _run(counter, first, budget, max_tokens, prompt=prompt)))
        if shape == "str":
            body["prompt"] = plans[0].prompt
        elif shape == "strs":
            body["prompt"] = [plan.prompt for plan in plans]

    sent_max = max_tokens
    if max_tokens is not None and budget is not None and budget.clamp_max_tokens:
        sent_max = min(plan.max_tokens or max_tokens for plan in plans)
        body[max_key] = sent_max
    reserve = 0
    for plan in plans:
        completion = sent_max if sent_max is not None else max(plan.completion_room, 0)
        reserve += plan.prompt_tokens + choices * completion
    return body, reserve


def _run(
    counter: Counter,
    first: int,
    budget: TokenBudget | None,
    max_tokens: int | None,
    *,
    chat: list[dict[str, Any]] | None = None,
    prompt: str | list[int] | None = None,
) -> Flow[BudgetPlan]:
    """Drive one planner, answering its first request with ``first``."""
    context = counter.context_length(budget)
    if budget is None:  # rate limiting only: a count, no check
        room = (context - first) if context is not None else 0
        return BudgetPlan(first, max_tokens, first + room, messages=chat, prompt=_text(prompt))
    if context is None:
        raise TokenBudgetError(
            f"the context window of {counter.model!r} is unknown (the server does not report "
            "it); pass TokenBudget(context_length=...) to check calls against it",
            prompt_tokens=first,
            max_tokens=max_tokens,
            exact=counter.exact,
        )
    exact = counter.exact
    planner: Planner
    if chat is not None:
        planner = plan_chat(
            chat, max_tokens=max_tokens, context_length=context, budget=budget, exact=exact
        )
    elif isinstance(prompt, str):
        planner = plan_prompt(
            prompt, max_tokens=max_tokens, context_length=context, budget=budget, exact=exact
        )
    else:  # token ids: nothing to trim
        return plan_counted(
            first, max_tokens=max_tokens, context_length=context, budget=budget, exact=exact
        )
    return (yield from _drive(planner, counter, first))


def _drive(planner: Planner, counter: Counter, first: int) -> Generator[Any, Any, BudgetPlan]:
    try:
        next(planner)
        request = planner.send(first)
        while True:
            count = yield from counter.count(request)
            request = planner.send(count)
    except StopIteration as stop:
        plan: BudgetPlan = stop.value
        return plan


def _prompts(prompt: Any) -> tuple[list[str | list[int]], str]:
    """A completion prompt's four shapes as a list, and which shape it was."""
    if isinstance(prompt, str):
        return [prompt], "str"
    if prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt), "strs"
    if prompt and all(isinstance(p, int) for p in prompt):
        return [list(prompt)], "ids"
    return [list(p) for p in prompt], "batch-ids"


def _text(prompt: str | list[int] | None) -> str | None:
    return prompt if isinstance(prompt, str) else None
