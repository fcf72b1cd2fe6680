"""A reply in the generic tool-call format as OpenAI shows it: a message with ``tool_calls``
(or the ``response`` text as ``content``), or, streamed, the deltas OpenAI sends.

Both read the reply with ``sdk.tokens.ToolReplyDecoder``, whose events do not depend on how
the text is split, so a stream adds up to the message the same request gets unstreamed. A
stream's deltas, as OpenAI sends them: a call's first delta has its ``index``, ``id``
(``call_...``, made here: the model writes none), ``type`` and ``function.name`` with
``arguments: ""``; the arguments follow in fragments, ``{"index", "function": {"arguments"}}``.
A ``response`` streams as content deltas while it is generated. The finish reason is
``tool_calls`` when the model called tools and stopped by itself.
"""

from __future__ import annotations

import uuid

from sdk.tokens import ContentDelta, ToolCallStart, ToolReplyDecoder, ToolReplyEvent
from sdk.types import (
    ChatCompletionMessage,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageToolCall,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    Function,
)
from server_ref.api.errors import APIError


def new_call_id() -> str:
    """``call_`` and 24 hex digits, the shape of OpenAI's call ids."""
    return f"call_{uuid.uuid4().hex[:24]}"


def tool_finish_reason(reason: str | None, called: bool) -> str | None:
    """OpenAI's ``tool_calls`` for a reply that called tools and ended by itself."""
    return "tool_calls" if called and reason == "stop" else reason


def tool_message(text: str) -> ChatCompletionMessage:
    """The message of a whole reply (one cut short: what it holds so far).

    >>> tool_message('{"response": "Hi!"}').content
    'Hi!'
    """
    decoder = ToolReplyDecoder()
    _feed(decoder, text)
    reply = decoder.reply()
    calls: list[ChatCompletionMessageToolCall] = [
        ChatCompletionMessageFunctionToolCall(
            id=new_call_id(), function=Function(name=call.name, arguments=call.arguments)
        )
        for call in reply.tool_calls
    ]
    return ChatCompletionMessage(role="assistant", content=reply.content, tool_calls=calls or None)


class ToolDeltas:
    """One streamed choice: the reply's text in, OpenAI's deltas out."""

    def __init__(self) -> None:
        self._decoder = ToolReplyDecoder()
        self.called = False

    def feed(self, text: str) -> list[ChoiceDelta]:
        deltas = []
        for event in _feed(self._decoder, text):
            if isinstance(event, ContentDelta):
                deltas.append(ChoiceDelta(content=event.text))
                continue
            if isinstance(event, ToolCallStart):
                self.called = True
                call = ChoiceDeltaToolCall(
                    index=event.index,
                    id=new_call_id(),
                    type="function",
                    function=ChoiceDeltaToolCallFunction(name=event.name, arguments=""),
                )
            else:
                function = ChoiceDeltaToolCallFunction(arguments=event.text)
                call = ChoiceDeltaToolCall(index=event.index, function=function)
            deltas.append(ChoiceDelta(tool_calls=[call]))
        return deltas


def _feed(decoder: ToolReplyDecoder, text: str) -> list[ToolReplyEvent]:
    try:
        return decoder.feed(text)
    except ValueError as exc:  # the grammar allows only the format: this is a bug
        raise APIError(f"The reply is not in the tool-call format: {exc}") from None
