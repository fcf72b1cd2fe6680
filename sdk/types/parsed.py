"""What ``client.chat.completions.parse()`` returns: a completion with typed results added.

``choices[i].message.parsed`` is the reply's JSON validated into the ``response_format``
type (``None`` when the model refused); a function tool call whose tool was given as a
pydantic model (or as a strict JSON schema) has ``function.parsed_arguments``. Everything
else is the plain ``ChatCompletion``.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from .chat import ChatCompletion, ChatCompletionMessage, Choice
from .tools import (
    ChatCompletionMessageCustomToolCall,
    ChatCompletionMessageFunctionToolCall,
    Function,
)

__all__ = [
    "ParsedChatCompletion",
    "ParsedChatCompletionMessage",
    "ParsedChoice",
    "ParsedFunction",
    "ParsedFunctionToolCall",
]

ContentT = TypeVar("ContentT")


class ParsedFunction(Function):
    parsed_arguments: object | None = None


class ParsedFunctionToolCall(ChatCompletionMessageFunctionToolCall):
    function: ParsedFunction


class ParsedChatCompletionMessage(ChatCompletionMessage, Generic[ContentT]):
    parsed: ContentT | None = None
    tool_calls: list[ParsedFunctionToolCall | ChatCompletionMessageCustomToolCall] | None = None  # type: ignore[assignment]


class ParsedChoice(Choice, Generic[ContentT]):
    message: ParsedChatCompletionMessage[ContentT]


class ParsedChatCompletion(ChatCompletion, Generic[ContentT]):
    """A ``ChatCompletion`` whose messages carry ``parsed`` (see the module docstring).

    >>> completion = client.chat.completions.parse(  # doctest: +SKIP
    ...     model="m", messages=[...], response_format=CalendarEvent
    ... )
    >>> completion.choices[0].message.parsed  # doctest: +SKIP
    CalendarEvent(name='Science fair', day='Friday')
    """

    choices: list[ParsedChoice[ContentT]]  # type: ignore[assignment]
