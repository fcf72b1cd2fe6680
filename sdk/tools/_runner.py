"""Drivers of the tool loop (``sdk._protocol.tool_loop``): the sync one calls, the async one
awaits. They only do what the loop asks; every decision is made in the loop."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from .._protocol.tool_loop import (
    CreateCompletion,
    ToolLoop,
    ToolLoopResult,
    ToolOutcome,
    ToolRun,
)
from ..types import ChatCompletion

__all__ = ["AsyncToolRunner", "ToolRunner"]


class ToolRunner:
    """Runs a tool loop with a synchronous ``create`` (``client.chat.completions.create``).

    >>> ToolRunner(client.chat.completions.create).run(tool_loop(tools, kwargs))  # doctest: +SKIP
    """

    def __init__(self, create: Callable[..., ChatCompletion]) -> None:
        self._create = create

    def run(self, loop: ToolLoop) -> ToolLoopResult:
        reply: Any = None
        try:
            while True:
                try:
                    action = loop.send(reply)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                if isinstance(action, CreateCompletion):
                    reply = self._create(**action.kwargs)
                else:
                    reply = [_call(run) for run in action.runs]
        finally:
            loop.close()


def _call(run: ToolRun) -> ToolOutcome:
    try:
        value = run.tool.function(**run.arguments)
    except Exception as exc:  # the model is told; the loop goes on
        return ToolOutcome(error=exc)
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: no "coroutine was never awaited" warning
        error = TypeError(f"{run.tool.name!r} is async: run it with AsyncClient")
        return ToolOutcome(error=error)
    return ToolOutcome(value)


class AsyncToolRunner:
    """``ToolRunner`` for ``AsyncClient``: awaits ``create`` and ``async`` tools; the tools
    of one round run concurrently. Plain functions run in the event loop's thread."""

    def __init__(self, create: Callable[..., Awaitable[ChatCompletion]]) -> None:
        self._create = create

    async def run(self, loop: ToolLoop) -> ToolLoopResult:
        reply: Any = None
        try:
            while True:
                try:
                    action = loop.send(reply)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                if isinstance(action, CreateCompletion):
                    reply = await self._create(**action.kwargs)
                else:
                    reply = await asyncio.gather(*(_acall(run) for run in action.runs))
        finally:
            loop.close()


async def _acall(run: ToolRun) -> ToolOutcome:
    try:
        value = run.tool.function(**run.arguments)
        if inspect.isawaitable(value):
            value = await value
    except Exception as exc:  # the model is told; the loop goes on
        return ToolOutcome(error=exc)
    return ToolOutcome(value)
