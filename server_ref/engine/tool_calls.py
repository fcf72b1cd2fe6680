"""Tool calls for a model whose chat template cannot express them: one constrained JSON object.

The default model's template knows nothing of tools, so (like llama.cpp's generic handler in
``common/chat.cpp``) the tools are described in the prompt and the reply is constrained to one
JSON object in one of two shapes::

    {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, ...]}
    {"response": "The text for the user."}

``tool_call_schema(tools, tool_choice, parallel_tool_calls)`` builds the JSON schema of that
object:

* ``"required"``: the calls shape. Each item is one tool's ``{"name": const, "arguments":
  <its parameters schema>}`` (``anyOf`` over the tools), so once the model has written a name
  its arguments must fit that tool. ``name`` comes first so the choice is made before the
  arguments are written.
* a named tool (``{"type": "function", "function": {"name": N}}``): the calls shape with
  exactly one call, to ``N``.
* ``"auto"`` (the default): ``anyOf`` the calls shape and the response shape; the model decides
  with its first key. With a ``response_schema`` (``response_format`` ``json_schema`` together
  with tools) the response value follows that schema instead of being a string.
* ``"none"``, or no tools: ``None``, nothing to constrain for tools.
* ``parallel_tool_calls=False``: at most one call (``maxItems: 1``).

Tools with ``"strict": true`` get their parameters closed (``schema_rewrite.close_objects``).
Differences from llama.cpp: always the key ``tool_calls`` (llama.cpp writes ``tool_call`` for a
single call) so the parser knows one shape, and the model writes no call ids: the server makes
them. ``parse_tool_output`` turns a finished reply back into content or calls, keeping each
call's ``arguments`` exactly as generated (the text a stream would have sent in pieces).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from server_ref.engine.constraints import ConstraintError
from server_ref.engine.schema_rewrite import close_objects, embed_schema

__all__ = ["ToolCall", "ToolOutput", "ToolOutputError", "parse_tool_output", "tool_call_schema"]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what OpenAI accepts as a function name
_NO_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # the arguments object's JSON text, as the model wrote it


@dataclass(frozen=True)
class ToolOutput:
    content: str | None  # the response text (None for calls)
    tool_calls: list[ToolCall] = field(default_factory=list)


class ToolOutputError(ValueError):
    """A reply that is not a complete tool-call object (e.g. cut by ``max_tokens``)."""


def tool_call_schema(
    tools: Sequence[Mapping[str, Any]],
    tool_choice: str | Mapping[str, Any] = "auto",
    *,
    parallel_tool_calls: bool = True,
    response_schema: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The JSON schema the reply must follow, or ``None`` when tools do not constrain it.

    ``tools`` and ``tool_choice`` are the request's wire values. Raises ``ConstraintError``
    (a 400) for a tool without a valid name, duplicate names, parameters that are not an
    object, or a ``tool_choice`` that is unknown or names a function not in ``tools``.

    >>> weather = {"type": "function", "function": {"name": "get_weather"}}
    >>> tool_call_schema([weather], "required")["properties"]["tool_calls"]["minItems"]
    1
    """
    functions = _functions(tools)
    choice = _choice(tool_choice, functions)
    if choice == "none" or not functions:
        return None
    defs: dict[str, Any] = {}
    if choice not in ("auto", "required"):
        functions = {choice: functions[choice]}
    items = [
        _call_item(name, fn, defs, f"tool{i}") for i, (name, fn) in enumerate(functions.items())
    ]
    calls: dict[str, Any] = {"type": "array", "items": _one_of(items), "minItems": 1}
    if not parallel_tool_calls or choice not in ("auto", "required"):
        calls["maxItems"] = 1
    schema = _object(tool_calls=calls)
    if choice == "auto":
        response = {"type": "string"}
        if response_schema is not None:
            response = embed_schema(dict(response_schema), defs, "response")
        schema = {"anyOf": [_object(response=response), schema]}
    return {**schema, "$defs": defs} if defs else schema


def parse_tool_output(text: str) -> ToolOutput:
    """Content or tool calls from a finished reply in the format above.

    >>> parse_tool_output('{"tool_calls": [{"name": "f", "arguments": {"x": 1}}]}')
    ToolOutput(content=None, tool_calls=[ToolCall(name='f', arguments='{"x": 1}')])
    >>> parse_tool_output('{"response": "Hi!"}').content
    'Hi!'
    """
    try:
        members, end = _members(text, 0)
        if text[end:].strip():
            raise ValueError(f"text after the JSON object at {end}")
        if "tool_calls" in members:
            return ToolOutput(
                None, [_call(text, span) for span in _items(text, members["tool_calls"])]
            )
        if "response" in members:
            raw = text[slice(*members["response"])]
            value = json.loads(raw)
            return ToolOutput(value if isinstance(value, str) else raw)
        raise ValueError("neither 'tool_calls' nor 'response' is there")
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise ToolOutputError(f"not a complete tool-call reply: {exc}") from None


# --- building ----------------------------------------------------------------------------------


def _functions(tools: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    functions: dict[str, Mapping[str, Any]] = {}
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
            raise ConstraintError(f"tools[{i}]: only tools of type 'function' are supported")
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            raise ConstraintError(f"tools[{i}].function.name is required")
        name = fn["name"]
        if not _NAME.fullmatch(name):
            raise ConstraintError(
                f"tools[{i}].function.name {name!r} must be 1-64 letters, digits, '_' or '-'"
            )
        if name in functions:
            raise ConstraintError(f"tools[{i}]: two tools are named {name!r}")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, Mapping):
            raise ConstraintError(f"tools[{i}].function.parameters must be a JSON schema object")
        functions[name] = fn
    return functions


def _choice(tool_choice: str | Mapping[str, Any], functions: Mapping[str, Any]) -> str:
    """'none' | 'auto' | 'required' | the name of the one function to call."""
    if isinstance(tool_choice, str):
        if tool_choice not in ("none", "auto", "required"):
            raise ConstraintError(
                f"tool_choice {tool_choice!r} is not one of 'none', 'auto', 'required' "
                "or a named function"
            )
        if tool_choice == "required" and not functions:
            raise ConstraintError("tool_choice 'required' needs at least one tool")
        return tool_choice
    fn = tool_choice.get("function")
    name = fn.get("name") if isinstance(fn, Mapping) else None
    if tool_choice.get("type") != "function" or not isinstance(name, str):
        raise ConstraintError(
            "tool_choice must be a string or {'type': 'function', 'function': {'name': ...}}"
        )
    if name not in functions:
        raise ConstraintError(f"tool_choice names the function {name!r}, which is not in tools")
    return name


def _call_item(name: str, fn: Mapping[str, Any], defs: dict[str, Any], key: str) -> Any:
    params: Any = fn.get("parameters")
    params = _NO_PARAMETERS if params is None else dict(params)
    if fn.get("strict"):
        params = close_objects(params)
    return _object(name={"const": name}, arguments=embed_schema(params, defs, key))


def _object(**properties: Any) -> dict[str, Any]:
    """A closed object schema whose properties are all required, in the order given."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _one_of(schemas: list[Any]) -> Any:
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


# --- parsing: spans of JSON values, so arguments keep the model's own text -----------------------

_DECODER = json.JSONDecoder()
Span = tuple[int, int]


def _call(text: str, span: Span) -> ToolCall:
    members, _ = _members(text, span[0])
    name = json.loads(text[slice(*members["name"])])
    if not isinstance(name, str):
        raise ValueError("a call's name is not a string")
    return ToolCall(name, text[slice(*members["arguments"])])


def _members(text: str, i: int) -> tuple[dict[str, Span], int]:
    """The value spans of the object starting at ``text[i]`` (after whitespace), and its end."""
    i = _expect(text, i, "{")
    members: dict[str, Span] = {}
    if text[_skip(text, i)] == "}":
        return members, _skip(text, i) + 1
    while True:
        key, i = _DECODER.raw_decode(text, _skip(text, i))
        i = _skip(text, _expect(text, i, ":"))
        _, end = _DECODER.raw_decode(text, i)
        members[str(key)] = (i, end)
        i = _skip(text, end)
        if text[i] == "}":
            return members, i + 1
        i = _expect(text, i, ",")


def _items(text: str, span: Span) -> list[Span]:
    """The spans of the elements of the array in ``span``."""
    i = _expect(text, span[0], "[")
    items: list[Span] = []
    if text[_skip(text, i)] == "]":
        return items
    while True:
        start = _skip(text, i)
        _, end = _DECODER.raw_decode(text, start)
        items.append((start, end))
        i = _skip(text, end)
        if text[i] == "]":
            return items
        i = _expect(text, i, ",")


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _expect(text: str, i: int, char: str) -> int:
    i = _skip(text, i)
    if text[i] != char:
        raise ValueError(f"expected {char!r} at {i}")
    return i + 1
