"""Reading a reply of the generic tool-call format (``tool_format``), whole or as it streams.

A reply is one JSON object, ``{"tool_calls": [{"name": ..., "arguments": {...}}, ...]}`` or
``{"response": "..."}``. ``ToolReplyDecoder`` is a push-style decoder: ``feed(text)`` takes
the next piece of the reply and returns what OpenAI's stream says for it,

* ``ContentDelta``: more of the ``response``, decoded from its JSON string as it arrives (a
  non-string response, under a ``response_format`` schema: its JSON text); an empty one when
  the response begins, so an empty response still reads as ``""``;
* ``ToolCallStart``: a call's ``index`` and ``name``, once the name is complete;
* ``ArgumentsDelta``: the next piece of a call's ``arguments``, exactly as the model wrote it
  (never re-serialised), so the pieces add up to the call's ``arguments`` string;

and ``close()`` checks that the reply is complete. The events depend only on the text, not
on how it is split into pieces, which is what makes a streamed reply add up to the same
message as the reply read whole (``parse_tool_reply``, tested at every split point).

Whitespace between JSON tokens is allowed anywhere (inside ``arguments`` it is kept). A key
other than ``tool_calls`` / ``response`` at the top, a call without a string ``name``, or text
that is not JSON raises ``ValueError``; a call's other keys are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ArgumentsDelta",
    "ContentDelta",
    "ToolCallStart",
    "ToolCallText",
    "ToolReply",
    "ToolReplyDecoder",
    "ToolReplyEvent",
    "parse_tool_reply",
]


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class ToolCallStart:
    index: int  # the call's position in ``tool_calls``
    name: str


@dataclass(frozen=True)
class ArgumentsDelta:
    index: int
    text: str


ToolReplyEvent = ContentDelta | ToolCallStart | ArgumentsDelta


@dataclass(frozen=True)
class ToolCallText:
    name: str
    arguments: str  # the arguments' JSON text, exactly as the model wrote it


@dataclass(frozen=True)
class ToolReply:
    """A reply read back: ``tool_calls``, or the ``content`` of a direct answer."""

    content: str | None
    tool_calls: tuple[ToolCallText, ...] = ()


def parse_tool_reply(text: str) -> ToolReply:
    """Read a whole reply; ``ValueError`` if it is not one, or is cut short.

    >>> parse_tool_reply('{"tool_calls": [{"name": "f", "arguments": {"x": 1}}]}').tool_calls
    (ToolCallText(name='f', arguments='{"x": 1}'),)
    >>> parse_tool_reply('{"response": "Hi!"}').content
    'Hi!'
    """
    decoder = ToolReplyDecoder()
    decoder.feed(text)
    decoder.close()
    return decoder.reply()


_WS = " \t\r\n"
_SCALAR_START = frozenset("-0123456789tfn")
Expect = Literal["value", "key", "colon", "next", "end"]
Role = Literal["top", "response", "calls", "call", "name", "arguments", "other"]


@dataclass
class _Container:
    bracket: str  # "{" or "["
    key: str | int | None = None  # the member being read: its key, or the item's index
    empty: bool = True


@dataclass
class _Call:
    name: str | None = None
    arguments: list[str] = field(default_factory=list)  # all of it, as written
    sent: int = 0  # pieces of ``arguments`` already returned as events


class ToolReplyDecoder:
    """Push-style reader of one reply (see the module docstring).

    >>> d = ToolReplyDecoder()
    >>> d.feed('{"tool_calls": [{"name": "f", "argu')
    [ToolCallStart(index=0, name='f')]
    >>> d.feed('ments": {"x": 1}}]}')
    [ArgumentsDelta(index=0, text='{"x": 1}')]
    >>> d.close()
    >>> d.reply()
    ToolReply(content=None, tool_calls=(ToolCallText(name='f', arguments='{"x": 1}'),))
    """

    def __init__(self) -> None:
        self._stack: list[_Container] = []
        self._expect: Expect = "value"
        self._string: list[str] | None = None  # raw characters of the string being read
        self._string_role: Role | Literal["key"] = "other"
        self._escape = False
        self._scalar = False
        self._capture: Role | None = None  # "response" / "arguments": raw text is being kept
        self._capture_depth = 0
        self._content: list[str] | None = None  # the response so far
        self._unsent: list[str] = []  # ... and what of it has not been returned yet
        self._decoded = 0  # raw characters of the response string already decoded
        self._calls: list[_Call] = []
        self._events: list[ToolReplyEvent] = []

    def feed(self, text: str) -> list[ToolReplyEvent]:
        """The events for the next piece of the reply."""
        for char in text:
            self._char(char)
        if self._string is not None and self._string_role == "response":
            self._decode_response(final=False)
        self._send()
        events, self._events = self._events, []
        return events

    def close(self) -> None:
        """``ValueError`` unless the reply is one complete JSON object."""
        if self._expect != "end":
            raise ValueError("the tool-call reply is incomplete")

    def reply(self) -> ToolReply:
        """What has been read (of a reply cut short: the text and calls read until then)."""
        content = None if self._content is None else "".join(self._content)
        calls = tuple(
            ToolCallText(c.name, "".join(c.arguments)) for c in self._calls if c.name is not None
        )
        return ToolReply(content, calls)

    # -- the scanner ----------------------------------------------------------------------------

    def _char(self, ch: str) -> None:
        if self._string is not None:
            self._take(ch)
            self._string_char(ch)
            return
        if self._scalar:
            if ch not in _WS and ch not in ",}]":
                self._take(ch)
                return
            self._scalar = False
            self._end_value()
        if ch in _WS:
            if self._capture and len(self._stack) > self._capture_depth:
                self._take(ch)  # whitespace inside the kept value is part of its text
            return
        if self._expect == "value":
            self._begin_value(ch)
        elif self._expect == "key":
            if ch == "}" and self._stack[-1].empty:
                self._close(ch)
            elif ch == '"':
                self._take(ch)
                self._string, self._string_role = [], "key"
            else:
                raise ValueError(f"expected a key, got {ch!r}")
        elif self._expect == "colon":
            if ch != ":":
                raise ValueError(f"expected ':', got {ch!r}")
            self._take(ch)
            self._expect = "value"
        elif self._expect == "next":
            self._after_value(ch)
        else:
            raise ValueError(f"text after the JSON object: {ch!r}")

    def _begin_value(self, ch: str) -> None:
        top = self._stack[-1] if self._stack else None
        if ch == "]" and top is not None and top.bracket == "[" and top.empty:
            self._close(ch)
            return
        if top is not None:
            top.empty = False
        role = self._role()
        needs = {"top": "{", "calls": "[", "call": "{"}.get(role)
        if needs is not None and ch != needs:
            raise ValueError(f"expected {needs!r} for the {role} value, got {ch!r}")
        if role == "response":
            self._content = []
            self._events.append(ContentDelta(""))
        if role == "arguments" or (role == "response" and ch != '"'):
            self._capture, self._capture_depth = role, len(self._stack)
        self._take(ch)
        if ch in "{[":
            self._stack.append(_Container(ch, 0 if ch == "[" else None))
            self._expect = "key" if ch == "{" else "value"
            if role == "call":
                self._calls.append(_Call())
        elif ch == '"':
            self._string, self._string_role, self._decoded = [], role, 0
        elif ch in _SCALAR_START and role != "name":
            self._scalar = True
        else:
            raise ValueError(f"expected a JSON value, got {ch!r}")

    def _after_value(self, ch: str) -> None:
        top = self._stack[-1]
        if ch == ",":
            self._take(ch)
            if isinstance(top.key, int):
                top.key += 1
            self._expect = "value" if top.bracket == "[" else "key"
        elif ch == "]}"[top.bracket == "{"]:
            self._close(ch)
        else:
            raise ValueError(f"expected ',' or a closing bracket, got {ch!r}")

    def _close(self, ch: str) -> None:
        self._take(ch)
        self._stack.pop()
        if self._role() == "call":
            call = self._calls[-1]
            if call.name is None:
                raise ValueError("a tool call has no name")
            if not call.arguments:
                call.arguments.append("{}")  # no arguments given: none taken
                self._send()
        self._end_value()

    def _string_char(self, ch: str) -> None:
        assert self._string is not None
        if self._escape:
            self._escape = False
        elif ch == "\\":
            self._escape = True
        elif ch == '"':
            self._end_string()
            return
        self._string.append(ch)

    def _end_string(self) -> None:
        assert self._string is not None
        role = self._string_role
        if role == "response":
            self._decode_response(final=True)
        text = _decode("".join(self._string))
        self._string = None
        if role == "key":
            self._stack[-1].key = text
            if len(self._stack) == 1 and text not in ("tool_calls", "response"):
                raise ValueError(f"unexpected key {text!r} in a tool-call reply")
            self._expect = "colon"
            return
        if role == "name":
            self._calls[-1].name = text
            self._events.append(ToolCallStart(len(self._calls) - 1, text))
            self._send()  # arguments written before the name
        self._end_value()

    def _end_value(self) -> None:
        if self._capture is not None and len(self._stack) == self._capture_depth:
            self._capture = None
            self._send()  # a value kept whole goes out before whatever follows it
        self._expect = "next" if self._stack else "end"

    def _role(self) -> Role:
        """What the value about to be read (or just read) is, from where it sits."""
        path = [c.key for c in self._stack]
        if not path:
            return "top"
        if path == ["response"]:
            return "response"
        if path[0] != "tool_calls" or len(path) > 3:
            return "other"
        if len(path) < 3:
            return "calls" if len(path) == 1 else "call"
        return "name" if path[2] == "name" else "arguments" if path[2] == "arguments" else "other"

    # -- what is kept, and returned -------------------------------------------------------------

    def _take(self, ch: str) -> None:
        """Keep a character of a value whose raw text is wanted."""
        if self._capture == "arguments":
            self._calls[-1].arguments.append(ch)
        elif self._capture == "response":
            self._add_content(ch)

    def _add_content(self, text: str) -> None:
        if text:
            assert self._content is not None
            self._content.append(text)
            self._unsent.append(text)

    def _decode_response(self, *, final: bool) -> None:
        """Decode the response string's characters up to the last complete escape."""
        assert self._string is not None
        raw = self._string
        end = len(raw) if final else _complete_prefix(raw, self._decoded)
        self._add_content(_decode("".join(raw[self._decoded : end])))
        self._decoded = end

    def _send(self) -> None:
        if self._unsent:
            self._events.append(ContentDelta("".join(self._unsent)))
            self._unsent.clear()
        for index, call in enumerate(self._calls):
            if call.name is not None and call.sent < len(call.arguments):
                self._events.append(ArgumentsDelta(index, "".join(call.arguments[call.sent :])))
                call.sent = len(call.arguments)


def _complete_prefix(raw: list[str], start: int) -> int:
    """The end of the longest run of ``raw[start:]`` that does not stop inside an escape
    (``\\n``, ``\\u00e9``, or a surrogate pair ``\\ud83d\\ude00``, which must be decoded whole)."""
    i = safe = start
    while i < len(raw):
        if raw[i] != "\\":
            i += 1
        elif i + 1 >= len(raw):
            break
        elif raw[i + 1] != "u":
            i += 2
        elif i + 6 > len(raw):
            break
        elif 0xD800 <= int("".join(raw[i + 2 : i + 6]), 16) < 0xDC00:
            if i + 8 > len(raw) or (raw[i + 6 : i + 8] == ["\\", "u"] and i + 12 > len(raw)):
                break
            i += 12 if raw[i + 6 : i + 8] == ["\\", "u"] else 6
        else:
            i += 6
        safe = i
    return safe


def _decode(raw: str) -> str:
    """A JSON string's inside as text; a lone surrogate (valid JSON, not UTF-8) becomes U+FFFD."""
    text: str = json.loads(f'"{raw}"')
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
