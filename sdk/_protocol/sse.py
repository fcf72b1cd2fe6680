"""A push-style Server-Sent Events decoder, bytes in, events out.

Follows the WHATWG HTML standard, "9.2.6 Interpreting an event stream":
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Strategy: bytes go through an incremental UTF-8 decoder (so a character split between two
network chunks is decoded once it is complete; invalid bytes become U+FFFD, as the spec's
"UTF-8 decode" does), then through a line splitter that accepts CRLF, LF and CR (remembering
a trailing CR so that a CRLF split across chunks counts once), then through the spec's
field-processing steps. Nothing here blocks or allocates per byte; a long line arriving in
many chunks is joined once.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent"]

_EOL = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event.

    ``event`` is the type (``"message"`` when the stream gave none), ``data`` the data lines
    joined with ``"\\n"``, ``id`` the last event ID seen so far in the stream (``""`` if none),
    ``retry`` the reconnection time in ms if this event's block set one.
    """

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None


class SSEDecoder:
    """Incremental SSE parser: feed any byte chunks, get the events they complete.

    >>> decoder = SSEDecoder()
    >>> decoder.decode(b"data: hel")
    []
    >>> decoder.decode(b"lo\\n\\n")
    [ServerSentEvent(data='hello', event='message', id='', retry=None)]
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False  # has the first character (a possible BOM) been seen?
        self._skip_lf = False  # did the previous chunk end in CR (first half of a CRLF)?
        self._line: list[str] = []  # pieces of the current, unterminated line
        self._data: list[str] = []
        self._event = ""
        self._block_retry: int | None = None
        self.last_event_id = ""
        self.retry: int | None = None  # the stream's reconnection time in ms, if it set one

    def decode(self, chunk: bytes) -> list[ServerSentEvent]:
        """Feed the next bytes of the stream; return the events they complete."""
        return self._feed_text(self._utf8.decode(chunk))

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: drop any unterminated line or event, and reset for reuse.

        The spec says "If the file ends in the middle of an event, before the final empty
        line, the incomplete event is not dispatched", so this always returns ``[]``; it
        exists so that every decoder is driven the same way. ``last_event_id`` survives, as
        it does across reconnections.
        """
        self._utf8.reset()
        self._started = self._skip_lf = False
        self._line.clear()
        self._reset_block()
        return []

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        if not text:
            return []
        if not self._started:
            self._started = True
            # "One leading U+FEFF BYTE ORDER MARK character must be ignored if any are present."
            text = text.removeprefix("\ufeff")
        if self._skip_lf:
            self._skip_lf = False
            text = text.removeprefix("\n")
        events: list[ServerSentEvent] = []
        start = 0
        for match in _EOL.finditer(text):
            self._line.append(text[start : match.start()])
            line = "".join(self._line)
            self._line.clear()
            event = self._process_line(line)
            if event is not None:
                events.append(event)
            start = match.end()
        if start < len(text):
            self._line.append(text[start:])
        elif text.endswith("\r"):
            self._skip_lf = True
        return events

    def _process_line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, typically a keep-alive ping
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = self._block_retry = int(value)
        # other fields, an id containing NUL and a non-numeric retry are ignored, per the spec
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        # "If the data buffer is an empty string, set the data buffer and the event type
        # buffer to the empty string and return." (a block with data lines always dispatches,
        # even when every line was empty)
        event = None
        if self._data:
            event = ServerSentEvent(
                data="\n".join(self._data),
                event=self._event or "message",
                id=self.last_event_id,
                retry=self._block_retry,
            )
        self._reset_block()
        return event

    def _reset_block(self) -> None:
        self._data.clear()
        self._event = ""
        self._block_retry = None
