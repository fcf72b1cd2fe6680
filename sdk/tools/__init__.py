"""Tools for the model: definitions from Python functions or pydantic models, and a loop
that runs the calls.

* ``function_tool(fn)`` — a ``FunctionTool`` from a typed function (name, docstring,
  parameters as JSON schema); ``.param`` goes into ``tools=[...]``.
* ``pydantic_function_tool(Model)`` — a strict tool whose arguments are ``Model``; with
  ``chat.completions.parse()`` its calls come back with ``function.parsed_arguments``.
* ``client.chat.completions.run_tools(tools=[fn, ...], model=..., messages=...)`` — call,
  run the requested functions, send their results back, until the model answers (at most
  ``max_rounds`` rounds). ``tool_loop`` + ``ToolRunner`` / ``AsyncToolRunner`` are the same
  loop for another ``create`` function.

>>> def get_weather(city: str) -> str:
...     '''The current weather in a city.'''
...     return "sunny"
>>> result = client.chat.completions.run_tools(  # doctest: +SKIP
...     model="m", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[get_weather]
... )
>>> result.content  # doctest: +SKIP
'It is sunny in Paris.'
"""

from __future__ import annotations

from .._protocol.function_tools import FunctionTool, function_tool
from .._protocol.structured import pydantic_function_tool
from .._protocol.tool_loop import ToolLike, ToolLoop, ToolLoopResult, tool_loop, tool_result_text
from ._runner import AsyncToolRunner, ToolRunner

__all__ = [
    "AsyncToolRunner",
    "FunctionTool",
    "ToolLike",
    "ToolLoop",
    "ToolLoopResult",
    "ToolRunner",
    "function_tool",
    "pydantic_function_tool",
    "tool_loop",
    "tool_result_text",
]
