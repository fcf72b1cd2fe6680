"""Tools from typed Python functions: the definition a model sees, and argument checking.

``function_tool(get_weather)`` reads the function's signature: the name, the first paragraph
of the docstring as the description, each parameter's annotation as its JSON schema (through
pydantic, so models, enums, ``Literal``s, ``Annotated[..., Field(description=...)]`` all
work), a default making the parameter optional, and per-parameter descriptions from a
Google-style ``Args:`` section. The arguments a model sends are validated against the same
pydantic model before the function runs.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pydantic

from .._exceptions import InvalidRequestParamsError
from ..types import ChatCompletionFunctionToolParam, FunctionDefinitionParam
from .strict_schema import make_strict
from .structured import ModelFunctionDefinition

__all__ = ["FunctionTool", "function_tool"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI accepts as a function name
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


@dataclass(frozen=True, eq=False)
class FunctionTool:
    """A Python function the model may call, with its JSON-schema definition.

    ``param`` goes into ``tools=[...]``; ``validate(arguments)`` turns the model's JSON
    arguments into keyword arguments (raising ``pydantic.ValidationError``); ``function``
    is the function itself (sync or ``async``).
    """

    function: Callable[..., Any]
    name: str
    description: str | None
    arguments: type[pydantic.BaseModel]
    strict: bool = False

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments (strict-mode compatible when ``strict``)."""
        schema = self.arguments.model_json_schema()
        return make_strict(schema) if self.strict else schema

    @property
    def param(self) -> ChatCompletionFunctionToolParam:
        """The tool definition for ``tools=[...]`` (``parse()`` fills ``parsed_arguments``)."""
        definition: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            definition["description"] = self.description
        if self.strict:
            definition["strict"] = True
        function = cast(
            FunctionDefinitionParam, ModelFunctionDefinition(definition, self.arguments)
        )
        return {"type": "function", "function": function}

    def validate(self, arguments: str) -> dict[str, Any]:
        """The keyword arguments for ``function`` from the model's JSON ``arguments``.

        Empty arguments mean none (servers send ``""`` for a call without parameters).
        """
        model = self.arguments.model_validate_json(arguments.strip() or "{}")
        return {name: getattr(model, name) for name in type(model).model_fields}


def function_tool(
    function: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    strict: bool = False,
) -> FunctionTool:
    """Describe a typed Python function as a tool.

    >>> def get_weather(city: str, unit: Literal["C", "F"] = "C") -> str:
    ...     '''The current weather in a city.
    ...
    ...     Args:
    ...         city: The city's name, e.g. "Paris".
    ...     '''
    >>> tool = function_tool(get_weather)  # doctest: +SKIP
    >>> tool.param["function"]["parameters"]["required"]  # doctest: +SKIP
    ['city']

    ``strict=True`` makes the schema strict-mode compatible (every parameter required,
    defaults dropped) and asks the service to follow it exactly.
    """
    tool_name = name or str(getattr(function, "__name__", ""))
    if not _NAME.match(tool_name):
        raise InvalidRequestParamsError(
            f"{tool_name!r} is not a valid tool name (letters, digits, '_' and '-', at most 64); "
            "pass name=..."
        )
    summary, arg_docs = _docstring(inspect.getdoc(function) or "")
    hints = typing.get_type_hints(function, include_extras=True)
    fields = {
        parameter.name: _field(tool_name, parameter, hints, arg_docs.get(parameter.name))
        for parameter in inspect.signature(function).parameters.values()
    }
    config = pydantic.ConfigDict(extra="forbid")  # an argument the function lacks is an error
    model = pydantic.create_model(tool_name, __config__=config, **fields)
    return FunctionTool(function, tool_name, description or summary or None, model, strict)


def _field(tool: str, parameter: inspect.Parameter, hints: dict[str, Any], doc: str | None) -> Any:
    if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
        raise InvalidRequestParamsError(
            f"{tool}: parameter {parameter.name!r} cannot be passed by keyword "
            "(*args, **kwargs and positional-only parameters cannot be tool arguments)"
        )
    annotation = hints.get(parameter.name, Any)
    default = ... if parameter.default is parameter.empty else parameter.default
    # (no description=None: it would hide one given with Annotated[..., Field(description=)])
    return (
        annotation,
        pydantic.Field(default, description=doc) if doc else pydantic.Field(default),
    )


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph, and ``{name: description}`` from a Google-style ``Args:`` section."""
    summary = doc.split("\n\n", 1)[0].strip()
    if summary.lower().startswith(("args:", "arguments:", "parameters:")):
        summary = ""
    described: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        if line.strip().lower() in ("args:", "arguments:", "parameters:"):
            in_args = True
        elif in_args and line and not line[0].isspace():
            in_args = False  # the next section ("Returns:")
        elif in_args and (match := _ARG_LINE.match(line)):
            described[match.group(1).lstrip("*")] = match.group(2).strip()
    return summary, described
