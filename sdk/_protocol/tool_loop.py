"""The tool-running loop, written once as a generator (sans-I/O) and driven sync or async.

    ask the model (with the tools) -> it calls some -> run them -> append its message and one
    ``tool`` message per call -> ask again ... until it answers without calling a tool

The generator yields what must happen and receives the result:

    action                    the driver does                           and sends back
    CreateCompletion(kwargs)  client.chat.completions.create(**kwargs)  the ChatCompletion
    RunTools(runs)            call each run's function(**arguments)     one ToolOutcome each

Rules: only the first choice is followed. A call to an unknown tool, arguments that are not
valid JSON for the function, or a function that raises becomes an ``Error: ...`` tool result
for the model to read, never an exception here. The caller's ``tool_choice`` applies to the
first request only (then the model decides, or ``"required"`` would loop forever). After
``max_rounds`` rounds of tool calls, a model still calling tools raises
``ToolLoopLimitError`` carrying the conversation, or, with ``on_limit="answer"``, is asked
once more with ``tool_choice="none"`` to answer from the results it has (LangChain's
``early_stopping_method="generate"``; small models often call the same tool again and
again).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic
import pydantic_core

from .._exceptions import ToolLoopLimitError
from ..types import ChatCompletion, ChatCompletionMessageToolCall
from .function_tools import FunctionTool, function_tool

__all__ = [
    "CreateCompletion",
    "OnLimit",
    "RunTools",
    "ToolLoop",
    "ToolLoopAction",
    "ToolLoopResult",
    "ToolOutcome",
    "ToolRun",
    "tool_loop",
    "tool_result_text",
]


@dataclass(frozen=True)
class CreateCompletion:
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class ToolRun:
    tool: FunctionTool
    arguments: dict[str, Any]  # validated keyword arguments
    call_id: str


@dataclass(frozen=True)
class RunTools:
    runs: list[ToolRun]


@dataclass(frozen=True)
class ToolOutcome:
    """What running one tool gave: its return value, or the exception it raised."""

    value: object = None
    error: Exception | None = None


@dataclass
class ToolLoopResult:
    """The end of a tool loop: the last reply (with no tool calls), the whole conversation
    (the caller's messages, each assistant turn, each tool result, the final answer), and
    how many rounds of tool calls ran."""

    completion: ChatCompletion
    messages: list[Any] = field(default_factory=list)
    rounds: int = 0

    @property
    def content(self) -> str | None:
        """The final answer's text."""
        choices = self.completion.choices
        return choices[0].message.content if choices else None


OnLimit = Literal["raise", "answer"]
ToolLoopAction = CreateCompletion | RunTools
ToolLoop = Generator[ToolLoopAction, Any, ToolLoopResult]
ToolLike = FunctionTool | Callable[..., Any]


def tool_loop(
    tools: Sequence[ToolLike],
    kwargs: Mapping[str, Any],
    *,
    max_rounds: int = 10,
    on_limit: OnLimit = "raise",
) -> ToolLoop:
    """The loop for ``tools`` (functions or ``FunctionTool``s) and ``create`` keyword arguments.

    >>> result = ToolRunner(client.chat.completions.create).run(  # doctest: +SKIP
    ...     tool_loop([get_weather], {"model": "m", "messages": messages})
    ... )
    """
    by_name = {
        t.name: t for t in (t if isinstance(t, FunctionTool) else function_tool(t) for t in tools)
    }
    messages = list(kwargs["messages"])
    request = {**kwargs, "tools": [t.param for t in by_name.values()]}
    rounds = 0
    while True:
        if rounds >= max_rounds and on_limit == "answer":
            request["tool_choice"] = "none"  # the last request: answer, call nothing
        completion: ChatCompletion = yield CreateCompletion({**request, "messages": list(messages)})
        if not completion.choices:
            return ToolLoopResult(completion, messages, rounds)
        message = completion.choices[0].message
        messages.append(message.to_param())
        calls = message.tool_calls or []
        if not calls:
            return ToolLoopResult(completion, messages, rounds)
        if rounds >= max_rounds:
            raise ToolLoopLimitError(
                f"the model still calls tools after {max_rounds} rounds "
                f"({', '.join(_name(c) for c in calls)}); raise max_rounds, or continue "
                "from error.messages with tool_choice='none'",
                messages=messages,
                completion=completion,
            )
        rounds += 1
        planned = [_plan(call, by_name) for call in calls]
        runs = [p for p in planned if isinstance(p, ToolRun)]
        outcomes: list[ToolOutcome] = (yield RunTools(runs)) if runs else []
        results = iter(outcomes)
        for call, plan in zip(calls, planned, strict=True):
            text = _outcome_text(plan.tool, next(results)) if isinstance(plan, ToolRun) else plan
            messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
        request.pop("tool_choice", None)


def _name(call: ChatCompletionMessageToolCall) -> str:
    return call.function.name if call.type == "function" else call.custom.name


def _plan(call: ChatCompletionMessageToolCall, tools: Mapping[str, FunctionTool]) -> ToolRun | str:
    """What to do for one call: run it, or the error text to answer it with."""
    if call.type != "function":
        return f"Error: {call.type} tool calls are not supported here; call a function."
    tool = tools.get(call.function.name)
    if tool is None:
        names = ", ".join(sorted(tools)) or "none"
        return f"Error: there is no tool named {call.function.name!r}. Available tools: {names}."
    try:
        arguments = tool.validate(call.function.arguments)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        return f"Error: invalid arguments for {tool.name!r}: {problems}. Call it again."
    return ToolRun(tool, arguments, call.id)


def _outcome_text(tool: FunctionTool, outcome: ToolOutcome) -> str:
    if outcome.error is not None:
        error = outcome.error
        return f"Error: {tool.name!r} failed: {type(error).__name__}: {error}"
    return tool_result_text(outcome.value)


def tool_result_text(value: object) -> str:
    """A function's return value as a ``tool`` message's text: a str as is, else JSON."""
    if isinstance(value, str):
        return value
    try:
        return pydantic_core.to_json(value).decode()
    except pydantic_core.PydanticSerializationError:
        return str(value)
