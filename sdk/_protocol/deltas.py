"""Merging stream deltas into a message: one set of rules for every field a server streams.

A chat stream sends each message in pieces (``delta``s). The rules, by the kind of value:

* text is concatenated (``content``, ``refusal``, ``reasoning_content``, ``reasoning``, a
  tool call's ``arguments``, audio ``data`` and ``transcript``, and any text field a server
  adds) - except identifiers (``id``, ``name``, ``type``, ``role``), which arrive once and
  are kept from their first non-empty piece (some servers repeat the name in every piece);
* objects are merged key by key with these same rules (``function``, ``audio``, ...);
* lists are extended (``annotations``), except ``tool_calls``, whose entries are merged by
  their ``index`` (a delta without one continues the last call unless it brings a new
  ``id``);
* ``null`` never overwrites; numbers and booleans keep the last value.

Unknown fields follow the same rules, so nothing a service sends is dropped.

>>> state: dict[str, Any] = {}
>>> merge(state, {"role": "assistant", "content": "Hel"}.items())
>>> merge(state, {"role": "assistant", "content": "lo"}.items())
>>> finish(state)
{'role': 'assistant', 'content': 'Hello'}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

__all__ = ["ONCE", "finish", "merge", "model_items"]

ONCE = frozenset({"id", "name", "type", "role"})


class _Text(list[str]):
    """The pieces of a text field, joined by ``finish`` (joining once keeps it linear)."""


class _Calls(dict[int, dict[str, Any]]):
    """Tool calls by index, turned into a list by ``finish``."""


def model_items(model: BaseModel) -> Iterable[tuple[str, Any]]:
    """The fields a server actually sent (unknown ones included), as (name, value) pairs."""
    return ((name, getattr(model, name)) for name in model.model_fields_set)


def merge(state: dict[str, Any], items: Iterable[tuple[str, Any]]) -> None:
    """Merge one delta's ``items`` into ``state`` (see the module docstring for the rules)."""
    for key, value in items:
        if value is None:
            continue
        if key == "tool_calls" and isinstance(value, list):
            calls = state.get(key)
            state[key] = _merge_calls(calls if isinstance(calls, _Calls) else _Calls(), value)
        else:
            state[key] = _merged(key, state.get(key), value)


def _merged(key: str, old: Any, new: Any) -> Any:
    if isinstance(new, BaseModel):
        new = dict(model_items(new))
    if isinstance(new, str):
        if key in ONCE:
            return old if isinstance(old, str) and old else new
        parts = old if isinstance(old, _Text) else _Text()
        parts.append(new)
        return parts
    if isinstance(new, dict):
        target = old if isinstance(old, dict) and not isinstance(old, _Calls) else {}
        merge(target, new.items())
        return target
    if isinstance(new, list):
        items = [x.model_dump(exclude_unset=True) if isinstance(x, BaseModel) else x for x in new]
        return [*old, *items] if type(old) is list else items
    return new


def _merge_calls(calls: _Calls, deltas: list[Any]) -> _Calls:
    for delta in deltas:
        fields = dict(model_items(delta)) if isinstance(delta, BaseModel) else dict(delta)
        index = fields.pop("index", None)
        if not isinstance(index, int):
            index = _implicit_index(calls, fields.get("id"))
        merge(calls.setdefault(index, {}), fields.items())
    return calls


def _implicit_index(calls: _Calls, call_id: object) -> int:
    # Servers that omit "index" send a call's id with its first piece only.
    if not calls:
        return 0
    last = max(calls)
    return last + 1 if call_id and call_id != calls[last].get("id") else last


def finish(state: dict[str, Any]) -> dict[str, Any]:
    """The merged message as plain JSON-like data (text joined, tool calls listed)."""
    return {key: _finished(value) for key, value in state.items()}


def _finished(value: Any) -> Any:
    if isinstance(value, _Text):
        return "".join(value)
    if isinstance(value, _Calls):
        return [_finished_call(value[index]) for index in sorted(value)]
    if isinstance(value, dict):
        return finish(value)
    return value


def _finished_call(call: dict[str, Any]) -> dict[str, Any]:
    done = finish(call)
    # A call whose arguments never came (a function without parameters) has empty arguments,
    # as in a non-streamed reply; a server that never sent an id gets an empty one.
    done.setdefault("id", "")
    function = done.get("function")
    if isinstance(function, dict):
        function.setdefault("arguments", "")
    return done
