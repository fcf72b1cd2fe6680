"""The generic tool-call format, for chat templates that know nothing of tools.

A model whose chat template has no ``tools`` (the default model's ChatML, for one) is told
about tools in plain text and answers in JSON, the way llama.cpp's "generic" handler does:

* **Tool definitions** go at the end of the system message (one is added first if the chat
  has none): a ``# Tools`` section with one line of JSON per function tool (``name``,
  ``description``, ``parameters``), then the reply format, worded by ``tool_choice``:
  ``auto`` allows ``{"tool_calls": [...]}`` or ``{"response": "..."}``; ``required`` only
  the first; a named tool only calls of it; ``parallel_tool_calls=False`` exactly one call.
* **The reply** is one JSON object, ``{"tool_calls": [{"name": ..., "arguments": {...}}]}``
  or (``auto`` only) ``{"response": "..."}``; ``tool_reply_schema`` is its JSON schema (what
  the server constrains decoding to) and ``parse_tool_reply`` reads it back.
* **History**: an assistant message with ``tool_calls`` is shown as the JSON it would have
  written (its text, if any, on a line before it); consecutive ``tool`` results become one
  ``user`` message ``{"tool_results": [{"name": ..., "content": ...}]}`` (any template can
  show a user message; the name comes from the call the result answers).

``tool_choice="none"`` (or no function tools) renders no tool section: the model cannot call
any. Custom (free-text) tools cannot be expressed in this format and are left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sdk.tokens.messages import template_messages

__all__ = [
    "ToolCallText",
    "ToolMode",
    "ToolReply",
    "ToolSpec",
    "active_tools",
    "generic_tool_messages",
    "parse_tool_reply",
    "tool_reply_schema",
    "tool_system_prompt",
]

ToolMode = Literal["auto", "required", "named"]


@dataclass(frozen=True)
class ToolSpec:
    """The function tools in play and how the model must use them (from ``active_tools``)."""

    tools: tuple[dict[str, Any], ...]  # {"name", "description"?, "parameters"} each
    mode: ToolMode
    parallel: bool = True

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
    return ToolSpec(tuple(specs), mode, parallel_tool_calls is not False)


def _function(tool: object) -> dict[str, Any] | None:
    if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
        return None
    function = tool.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        return None
    spec: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        spec["description"] = function["description"]
    spec["parameters"] = function.get("parameters") or {"type": "object", "properties": {}}
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
    ]
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
    >>> generic_tool_messages([
    ...     {"role": "assistant", "content": None, "tool_calls": [call]},
    ...     {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ... ], None)  # doctest: +NORMALIZE_WHITESPACE
    [{'role': 'assistant', 'content': '{"tool_calls": [{"name": "f", "arguments": {}}]}'},
     {'role': 'user', 'content': '{"tool_results": [{"name": "f", "content": "42"}]}'}]
    """
    out: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []  # consecutive tool results, written as one message
    names: dict[str, str] = {}  # tool_call_id -> the function it called
    for message in template_messages(messages, tool_fields=True):
        calls = message.pop("tool_calls", None)
        call_id = message.pop("tool_call_id", None)
        if message["role"] == "tool":
            name = message.get("name") or names.get(str(call_id), "")
            results.append({"name": name, "content": message["content"]})
            continue
        _flush_results(out, results)
        if calls:
            written = json.dumps(
                {"tool_calls": [_written_call(call, names) for call in calls]}, ensure_ascii=False
            )
            text = message["content"]
            message["content"] = f"{text}\n{written}" if text else written
        out.append(message)
    _flush_results(out, results)
    if spec is not None:
        _add_to_system(out, tool_system_prompt(spec))
    return out


def _written_call(call: Mapping[str, Any], names: dict[str, str]) -> dict[str, Any]:
    function = call.get("function") or call.get("custom") or {}
    name = function.get("name", "")
    if call.get("id"):
        names[str(call["id"])] = name
    return {"name": name, "arguments": function.get("arguments", function.get("input", {}))}


def _flush_results(out: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
    if results:
        text = json.dumps({"tool_results": results}, ensure_ascii=False)
        out.append({"role": "user", "content": text})
        results.clear()


def _add_to_system(out: list[dict[str, Any]], section: str) -> None:
    if out and out[0]["role"] == "system":
        text = out[0]["content"]
        out[0]["content"] = f"{text}\n\n{section}" if text else section
    else:
        out.insert(0, {"role": "system", "content": section})


# --- the reply -------------------------------------------------------------------------------


def tool_reply_schema(spec: ToolSpec) -> dict[str, Any]:
    """The JSON schema of a reply in this format (for constrained decoding).

    Each tool's ``$defs`` move to the top, renamed ``<tool>.<name>``, so its ``$ref``s still
    resolve inside the combined schema.
    """
    defs: dict[str, Any] = {}
    calls = [_call_schema(tool, defs) for tool in spec.tools]
    array: dict[str, Any] = {
        "type": "array",
        "items": calls[0] if len(calls) == 1 else {"anyOf": calls},
        "minItems": 1,
    }
    if not spec.parallel:
        array["maxItems"] = 1
    schema: dict[str, Any] = _object({"tool_calls": array})
    if spec.mode == "auto":
        schema = {"anyOf": [schema, _object({"response": {"type": "string"}})]}
    if defs:
        schema["$defs"] = defs
    return schema


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _call_schema(tool: Mapping[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    parameters = json.loads(json.dumps(tool["parameters"]))  # a deep copy, plain JSON
    prefix = f"{tool['name']}."
    for name, definition in (parameters.pop("$defs", None) or {}).items():
        defs[prefix + name] = _moved_refs(definition, prefix)
    return _object(
        {
            "name": {"type": "string", "const": tool["name"]},
            "arguments": _moved_refs(parameters, prefix),
        }
    )


def _moved_refs(node: Any, prefix: str) -> Any:
    if isinstance(node, list):
        return [_moved_refs(item, prefix) for item in node]
    if not isinstance(node, dict):
        return node
    moved = {key: _moved_refs(value, prefix) for key, value in node.items()}
    ref = moved.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        moved["$ref"] = "#/$defs/" + prefix + ref[len("#/$defs/") :]
    return moved


@dataclass(frozen=True)
class ToolCallText:
    name: str
    arguments: str  # compact JSON, as OpenAI sends it


@dataclass(frozen=True)
class ToolReply:
    """A reply read back: either ``tool_calls`` or the ``content`` of a direct answer."""

    content: str | None
    tool_calls: tuple[ToolCallText, ...] = ()


def parse_tool_reply(text: str) -> ToolReply:
    """Read a reply written in this format; ``ValueError`` if it is not one.

    >>> parse_tool_reply('{"tool_calls": [{"name": "f", "arguments": {"x": 1}}]}').tool_calls
    (ToolCallText(name='f', arguments='{"x":1}'),)
    >>> parse_tool_reply('{"response": "Hi!"}').content
    'Hi!'
    """
    data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("tool_calls"), list):
        calls = []
        for call in data["tool_calls"]:
            if not (isinstance(call, dict) and isinstance(call.get("name"), str)):
                raise ValueError(f"a tool call must be an object with a name: {call!r}")
            arguments = json.dumps(
                call.get("arguments", {}), ensure_ascii=False, separators=(",", ":")
            )
            calls.append(ToolCallText(call["name"], arguments))
        return ToolReply(None, tuple(calls))
    if isinstance(data, dict) and isinstance(data.get("response"), str):
        return ToolReply(data["response"])
    raise ValueError(
        f'expected {{"tool_calls": [...]}} or {{"response": "..."}}, got {text[:200]!r}'
    )
