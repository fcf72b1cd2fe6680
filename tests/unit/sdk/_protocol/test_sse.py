"""The SSE decoder, bytes in / events out, split at every possible point.

Cases follow the WHATWG "Interpreting an event stream" algorithm:
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
"""

from __future__ import annotations

import pytest

from sdk import ServerSentEvent, SSEDecoder


def decode_all(parts: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [event for part in parts for event in decoder.decode(part)]
    return events + decoder.flush()


def ev(
    data: str, event: str = "message", id: str = "", retry: int | None = None
) -> ServerSentEvent:
    return ServerSentEvent(data=data, event=event, id=id, retry=retry)


# A frame that exercises every rule at once: BOM, comment, named event, multi-line data,
# id, retry, an unknown field, a field without colon, all three line endings, and a
# multi-byte character (é is 2 bytes, 😀 is 4).
FRAME = (
    "\ufeff: keep-alive\r\n"
    "event: greeting\r\n"
    "data: h\u00e9llo\n"
    "data:  two spaces\r"
    "id: 42\n"
    "retry: 1500\r\n"
    "unknown: x\n"
    "data\n"
    "\r\n"
    'data: {"emoji": "\U0001f600"}\r'
    "\r"
    "data: [DONE]\n"
    "\n"
).encode()
EXPECTED = [
    ev("h\u00e9llo\n two spaces\n", event="greeting", id="42", retry=1500),
    ev('{"emoji": "\U0001f600"}', id="42"),
    ev("[DONE]", id="42"),
]


def test_frame_in_one_piece() -> None:
    assert decode_all([FRAME]) == EXPECTED


@pytest.mark.parametrize("split", range(len(FRAME) + 1))
def test_frame_split_at_every_point(split: int) -> None:
    assert decode_all([FRAME[:split], b"", FRAME[split:]]) == EXPECTED


@pytest.mark.parametrize("split", range(1, len(FRAME)))
def test_frame_split_at_two_points(split: int) -> None:
    # every first cut, with a second cut a few bytes later (inside CRLFs and UTF-8 too)
    second = min(split + 3, len(FRAME))
    assert decode_all([FRAME[:split], FRAME[split:second], FRAME[second:]]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7, 97, 100_000])
def test_frame_in_fixed_size_fragments(size: int) -> None:
    parts = [FRAME[i : i + size] for i in range(0, len(FRAME), size)]
    assert decode_all(parts) == EXPECTED


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        # CRLF, LF and CR all end lines; CRLF counts once
        (b"data: a\r\n\r\n", [ev("a")]),
        (b"data: a\n\n", [ev("a")]),
        (b"data: a\r\r", [ev("a")]),
        # only one leading space is removed; no space is fine
        (b"data:a\n\n", [ev("a")]),
        (b"data:  a\n\n", [ev(" a")]),
        # an empty data line still dispatches; a block without data does not
        (b"data\n\n", [ev("")]),
        (b"data:\ndata:\n\n", [ev("\n")]),
        (b"event: x\n\n", []),
        (b"id: 1\n\n", []),
        (b"retry: 10\n\n", []),
        # comments and unknown fields are ignored
        (b": ping\n\n", []),
        (b":\n\ndata: a\n\n", [ev("a")]),
        (b"foo: bar\ndata: a\n\n", [ev("a")]),
        # the event type resets after each dispatch; the last id persists
        (b"event: e\ndata: 1\n\ndata: 2\n\n", [ev("1", event="e"), ev("2")]),
        (b"id: 7\ndata: 1\n\ndata: 2\n\n", [ev("1", id="7"), ev("2", id="7")]),
        (b"id: 7\ndata: 1\n\nid\ndata: 2\n\n", [ev("1", id="7"), ev("2")]),
        # an id containing NUL is ignored; a non-numeric retry is ignored
        (b"id: 7\n\nid: a\x00b\ndata: 1\n\n", [ev("1", id="7")]),
        (b"retry: 1x\ndata: 1\n\n", [ev("1")]),
        (b"retry: \xc2\xb2\ndata: 1\n\n", [ev("1")]),  # superscript two is a digit, not ASCII
        (b"retry: 5\ndata: 1\n\ndata: 2\n\n", [ev("1", retry=5), ev("2")]),
        # only one BOM is ignored, and only at the very start
        (b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n", []),
        (b"data: \xef\xbb\xbfa\n\n", [ev("\ufeffa")]),
        # invalid UTF-8 becomes U+FFFD instead of failing
        (b"data: \xff\n\n", [ev("\ufffd")]),
        # an unterminated last event is discarded at the end of the stream
        (b"data: a\n\ndata: b\n", [ev("a")]),
        (b"data: a\n\ndata: b", [ev("a")]),
        (b"", []),
    ],
)
def test_spec_cases(stream: bytes, expected: list[ServerSentEvent]) -> None:
    assert decode_all([stream]) == expected
    assert decode_all([bytes([b]) for b in stream]) == expected  # one byte at a time


def test_crlf_split_across_chunks_counts_once() -> None:
    decoder = SSEDecoder()
    assert decoder.decode(b"data: a\r") == []
    assert decoder.decode(b"\n") == []  # the LF completing the CRLF is not a blank line
    assert decoder.decode(b"\r") == [ev("a")]
    assert decoder.decode(b"\ndata: b\n\n") == [ev("b")]


def test_cr_then_cr_is_a_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.decode(b"data: a\r") == []
    assert decoder.decode(b"\r") == [ev("a")]


def test_stream_state_is_visible() -> None:
    decoder = SSEDecoder()
    decoder.decode(b"id: abc\nretry: 3000\n\n")
    assert (decoder.last_event_id, decoder.retry) == ("abc", 3000)


def test_flush_drops_pending_input_and_resets() -> None:
    decoder = SSEDecoder()
    assert decoder.decode(b"id: 9\ndata: partial\xc3") == []
    assert decoder.flush() == []
    # a new stream on the same decoder: fresh state, except the last event id (per spec)
    assert decoder.decode(b"\xef\xbb\xbfdata: new\n\n") == [ev("new", id="9")]


def test_long_line_in_many_chunks() -> None:
    payload = b"x" * 50_000
    parts = [b"data: "] + [payload[i : i + 10] for i in range(0, len(payload), 10)] + [b"\n\n"]
    assert decode_all(parts) == [ev("x" * 50_000)]
