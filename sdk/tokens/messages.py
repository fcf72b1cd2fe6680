"""Chat messages in the shape chat templates expect, made the same way on both sides.

The server renders ``template_messages(request.messages)`` and the client counts the very
same dicts, so a message's ``None`` content, its text parts, or its ``name`` can never make
the two counts differ. ``tool_fields=True`` also keeps what tool-aware templates read (Hugging
Face's convention): an assistant's ``tool_calls`` with ``arguments`` as an object, and a
tool result's ``tool_call_id``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, cast

from sdk.tokens.errors import ChatTemplateError

__all__ = ["content_text", "template_messages"]


def content_text(content: object) -> str:
    """A message's content as one string: ``None`` -> ``""``, text parts joined by newlines.

    >>> content_text([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    'a\\nb'
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        return "\n".join(_part_text(part) for part in content)
    raise ChatTemplateError(
        f"message content must be a string or a list of text parts, got {content!r}"
    )


def _part_text(part: object) -> str:
    # an assistant message sent back as history may hold a refusal part: its text is the refusal
    text = _get(part, "text")
    if text is None and _get(part, "type") == "refusal":
        text = _get(part, "refusal")
    if not isinstance(text, str):
        raise ChatTemplateError(f"a content part has no text: {part!r}")
    return text


def _get(part: object, key: str) -> object:
    return part.get(key) if isinstance(part, Mapping) else getattr(part, key, None)


def template_messages(
    messages: Iterable[object], *, tool_fields: bool = False
) -> list[dict[str, Any]]:
    """``{"role", "content"[, "name"]}`` dicts from message dicts or ``ChatMessage`` models.

    >>> template_messages([{"role": "user", "content": None, "name": "ann"}])
    [{'role': 'user', 'content': '', 'name': 'ann'}]
    """
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        fields = _fields(index, message)
        item: dict[str, Any] = {
            "role": fields.get("role"),
            "content": content_text(fields.get("content")),
        }
        if fields.get("name") is not None:
            item["name"] = fields["name"]
        if tool_fields and fields.get("tool_calls"):
            item["tool_calls"] = [_tool_call(call) for call in fields["tool_calls"]]
        if tool_fields and fields.get("tool_call_id") is not None:
            item["tool_call_id"] = fields["tool_call_id"]
        out.append(item)
    return out


def _tool_call(call: object) -> dict[str, Any]:
    """A call as templates read it: ``function.arguments`` parsed into an object when it is
    JSON (templates write it with ``tojson``), else kept as the text it is."""
    dump = getattr(call, "model_dump", None)  # a ChatCompletionMessageToolCall
    fields = dict(dump(exclude_none=True) if callable(dump) else cast(Mapping[str, Any], call))
    function = fields.get("function")
    if isinstance(function, Mapping):
        function = dict(function)
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):  # invalid JSON is shown as it was written
                function["arguments"] = json.loads(arguments)
        fields["function"] = function
    return fields


def _fields(index: int, message: object) -> Mapping[str, Any]:
    if isinstance(message, Mapping):
        return message
    dump = getattr(message, "model_dump", None)  # a pydantic ChatMessage
    if callable(dump):
        fields = dump()
        if isinstance(fields, Mapping):
            return fields
    raise ChatTemplateError(
        f"message {index} must be a mapping with 'role' and 'content', got {type(message).__name__}"
    )
