"""The generic tool-call format, for chat templates that know nothing of tools.

A model whose chat template has no ``tools`` (the default model's ChatML, for one) is told
about tools in plain text and answers in JSON, the way llama.cpp's "generic" handler does:

* **Tool definitions** go at the end of the system message (one is added first if the chat
  has none): a ``# Tools`` section with one line of JSON per function tool (``name``,
  ``description``, ``parameters``), then the reply format, worded by ``tool_choice``:
  ``auto`` allows ``{"tool_calls": [...]}`` or ``{"response": "..."}``; ``required`` only
  the first; a named tool only calls of it; ``parallel_tool_calls=False`` exactly one call.
* **The reply** is one JSON object, ``{"tool_calls": [{"name": ..., "arguments": {...}}]}``
  or (``auto`` only) ``{"response": "..."}``. ``tool_reply_schema`` is its JSON schema, what
  the server constrains decoding to; ``sdk.tokens.tool_reply`` reads it back, whole or as it
  streams.
* **History**: an assistant message with ``tool_calls`` is shown as the JSON it would have
  written (its text, if any, on a line before it); consecutive ``tool`` results become one
  ``user`` message ``{"tool_results": [{"name": ..., "content": ...}]}`` (any template can
  show a user message; the name comes from the call the result answers).

``tool_choice="none"`` (or no function tools) renders no tool section: the model cannot call
any. The history is then told in words: ``I called get_weather with {"city": "Paris"}.``
and ``Result: sunny`` (``Results:`` and one ``- name: content`` line each for several): a
model that was never shown the JSON format copies JSON history as plain text instead of
answering (seen with the default model).

Custom (free-text) tools cannot be expressed in this format and are left out. A function
without ``parameters`` takes none (``{}`` exactly, as OpenAI reads it), and a ``strict`` one's
object schemas are closed (``additionalProperties: false``), in the prompt as in the reply
schema. A named ``tool_choice`` asks for exactly one call, as ``parallel_tool_calls=False``
does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sdk.tokens.messages import template_messages
from sdk.tokens.schema_rewrite import close_objects, embed_schema

__all__ = [
    "ToolMode",
    "ToolSpec",
    "active_tools",
    "generic_tool_messages",
    "native_tool_messages",
    "reply_format_instructions",
    "tool_reply_schema",
    "tool_system_prompt",
]

ToolMode = Literal["auto", "required", "named"]


@dataclass(frozen=True)
class ToolSpec:
    """The function tools in play and how the model must use them (from ``active_tools``)."""

    tools: tuple[dict[str, Any], ...]  # {"name", "description"?, "parameters"} each
    mode: ToolMode
    parallel: bool = True  # False: exactly one call (also for a named tool)

    @property
    def named(self) -> str | None:
        """The one tool the model must call (``mode == "named"``)."""
        return self.tools[0]["name"] if self.mode == "named" else None


def _plain(value: object) -> Any:
    dump = getattr(value, "model_dump", None)  # a pydantic request model
    return dump(mode="json", exclude_none=True, by_alias=True) if callable(dump) else value


def active_tools(
    tools: Sequence[object] | None,
    tool_choice: object = None,
    parallel_tool_calls: bool | None = None,
) -> ToolSpec | None:
    """The function tools the model may call under ``tool_choice``, or ``None`` for none.

    >>> weather = {"type": "function", "function": {"name": "weather", "parameters": {}}}
    >>> active_tools([weather], "required").mode
    'required'
    >>> active_tools([weather], "none") is None
    True
    """
    functions = [_function(_plain(tool)) for tool in tools or ()]
    specs = [f for f in functions if f is not None]
    choice = _plain(tool_choice)
    mode: ToolMode = "required" if choice == "required" else "auto"
    if isinstance(choice, Mapping):
        kind, named = choice.get("type"), choice.get("function")
        if kind == "function" and isinstance(named, Mapping):
            specs, mode = [s for s in specs if s["name"] == named.get("name")], "named"
        elif kind == "allowed_tools" and isinstance(choice.get("allowed_tools"), Mapping):
            allowed = choice["allowed_tools"]
            names = {_name(tool) for tool in allowed.get("tools") or ()}
            specs = [s for s in specs if s["name"] in names]
            mode = "required" if allowed.get("mode") == "required" else "auto"
    if choice == "none" or not specs:
        return None
    return ToolSpec(tuple(specs), mode, parallel_tool_calls is not False and mode != "named")


# OpenAI: "Omitting parameters defines a function with an empty parameter list."
_NO_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": False}


def _function(tool: object) -> dict[str, Any] | None:
    if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
        return None
    function = tool.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        return None
    spec: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        spec["description"] = function["description"]
    parameters = function.get("parameters") or _NO_PARAMETERS
    spec["parameters"] = close_objects(parameters) if function.get("strict") else parameters
    return spec


def _name(tool: object) -> object:
    function = tool.get("function") if isinstance(tool, Mapping) else None
    return function.get("name") if isinstance(function, Mapping) else None


_CALLS = '{"tool_calls": [{"name": "<tool name>", "arguments": {<arguments>}}]}'
_RESPONSE = '{"response": "<your reply>"}'


def tool_system_prompt(spec: ToolSpec) -> str:
    """The ``# Tools`` section added to the system message."""
    lines = [
        "# Tools",
        "",
        "You can call these tools. Each line is one tool: its name, what it does, and the "
        "JSON schema of its arguments.",
        "",
        *(json.dumps(tool, ensure_ascii=False) for tool in spec.tools),
        "",
        reply_format_instructions(spec),
    ]
    return "\n".join(lines)


def reply_format_instructions(spec: ToolSpec) -> str:
    """How to reply: the JSON shapes allowed under ``spec``'s tool choice (the end of the
    ``# Tools`` section; alone in the system message of a template that lists the tools
    itself)."""
    lines = []
    if spec.mode == "auto":
        lines.append(
            f"Reply with one JSON object and nothing else: {_CALLS} to call tools, or "
            f"{_RESPONSE} to reply to the user directly."
        )
    elif spec.mode == "required":
        lines.append(f"Reply with one JSON object and nothing else, calling tools: {_CALLS}")
    else:
        lines.append(
            f"Reply with one JSON object and nothing else, calling the tool {spec.named!r}: "
            + _CALLS.replace("<tool name>", str(spec.named))
        )
    if not spec.parallel:
        lines.append('The "tool_calls" list holds exactly one call.')
    return "\n".join(lines)


def generic_tool_messages(
    messages: Sequence[object], spec: ToolSpec | None
) -> list[dict[str, Any]]:
    """``messages`` rewritten for a template without tool support (see the module docstring).

    >>> call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    >>> history = [
    ...     {"role": "assistant", "content": None, "tool_calls": [call]},
    ...     {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ... ]
    >>> generic_tool_messages(history, active_tools([{"function": {"name": "f"}}]))[1:]
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'role': 'assistant', 'content': '{"tool_calls": [{"name": "f", "arguments": {}}]}'},
     {'role': 'user', 'content': '{"tool_results": [{"name": "f", "content": "42"}]}'}]
    >>> generic_tool_messages(history, None)  # doctest: +NORMALIZE_WHITESPACE
    [{'role': 'assistant', 'content': 'I called f with {}.'},
     {'role': 'user', 'content': 'Result: 42'}]
    """
    out: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []  # consecutive tool results, written as one message
    names: dict[str, str] = {}  # tool_call_id -> the function it called
    words = spec is None  # no tool section: the history in words, not in the JSON format
    for message in template_messages(messages, tool_fields=True):
        calls = message.pop("tool_calls", None)
        call_id = message.pop("tool_call_id", None)
        if message["role"] == "tool":
            name = message.get("name") or names.get(str(call_id), "")
            results.append({"name": name, "content": message["content"]})
            continue
        _flush_results(out, results, words)
        if calls:
            written = [_written_call(call, names) for call in calls]
            said = _calls_in_words(written) if words else _calls_in_json(written)
            text = message["content"]
            message["content"] = f"{text}\n{said}" if text else said
        out.append(message)
    _flush_results(out, results, words)
    if spec is not None:
        _add_to_system(out, tool_system_prompt(spec))
    return out


def native_tool_messages(messages: Sequence[object], spec: ToolSpec | None) -> list[dict[str, Any]]:
    """``messages`` for a template that renders tools itself (it gets them as ``tools``):
    Hugging Face's tool convention, plus the generic reply format in the system message,
    since the reply is constrained to it whatever the template asks for (llama.cpp's generic
    handler does the same for tool-aware templates it has no dedicated parser for).
    """
    out = template_messages(messages, tool_fields=True)
    if spec is not None:
        _add_to_system(out, reply_format_instructions(spec))
    return out


def _written_call(call: Mapping[str, Any], names: dict[str, str]) -> dict[str, Any]:
    function = call.get("function") or call.get("custom") or {}
    name = function.get("name", "")
    if call.get("id"):
        names[str(call["id"])] = name
    return {"name": name, "arguments": function.get("arguments", function.get("input", {}))}


def _calls_in_json(calls: list[dict[str, Any]]) -> str:
    return json.dumps({"tool_calls": calls}, ensure_ascii=False)


def _calls_in_words(calls: list[dict[str, Any]]) -> str:
    def arguments(value: object) -> str:
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    said = "; ".join(f"{c['name']} with {arguments(c['arguments'])}" for c in calls)
    return f"I called {said}."


def _flush_results(out: list[dict[str, Any]], results: list[dict[str, Any]], words: bool) -> None:
    if not results:
        return
    if not words:
        text = json.dumps({"tool_results": results}, ensure_ascii=False)
    elif len(results) == 1:
        text = f"Result: {results[0]['content']}"
    else:
        lines = (f"- {r['name'] or 'tool'}: {r['content']}" for r in results)
        text = "Results:\n" + "\n".join(lines)
    out.append({"role": "user", "content": text})
    results.clear()


def _add_to_system(out: list[dict[str, Any]], section: str) -> None:
    if out and out[0]["role"] == "system":
        text = out[0]["content"]
        out[0]["content"] = f"{text}\n\n{section}" if text else section
    else:
        out.insert(0, {"role": "system", "content": section})


# --- the reply's schema --------------------------------------------------------------------


def tool_reply_schema(
    spec: ToolSpec, *, response_schema: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON schema of a reply under ``spec``, for constrained decoding:

    * each call is ``anyOf`` one item per tool, ``{"name": {"const": <tool>}, "arguments":
      <its parameters>}``, ``name`` first: the tool is chosen before its arguments are
      written, and they must fit the tool chosen;
    * at least one call; exactly one when ``spec.parallel`` is false;
    * ``auto`` allows either shape, ``required`` and a named tool only calls; with a
      ``response_schema`` (``response_format`` next to tools) the ``response`` follows it
      instead of being a string;
    * each tool's parameters move under the root's ``$defs`` (``embed_schema``), so their own
      ``$defs`` and ``$ref``s (pydantic writes them) keep working.

    >>> weather = {"type": "function", "function": {"name": "get_weather"}}
    >>> schema = tool_reply_schema(active_tools([weather], "required"))
    >>> schema["properties"]["tool_calls"]["minItems"]
    1
    """
    defs: dict[str, Any] = {}
    calls = [
        _object(
            name={"const": t["name"]}, arguments=embed_schema(t["parameters"], defs, f"tool{i}")
        )
        for i, t in enumerate(spec.tools)
    ]
    array: dict[str, Any] = {
        "type": "array",
        "items": calls[0] if len(calls) == 1 else {"anyOf": calls},
        "minItems": 1,
    }
    if not spec.parallel:
        array["maxItems"] = 1
    schema = _object(tool_calls=array)
    if spec.mode == "auto":
        response: Any = {"type": "string"}
        if response_schema is not None:
            response = embed_schema(dict(response_schema), defs, "response")
        schema = {"anyOf": [_object(response=response), schema]}
    return {**schema, "$defs": defs} if defs else schema


def _object(**properties: Any) -> dict[str, Any]:
    """A closed object schema whose properties are all required, in the order given."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
