"""Reading generic tool-call replies: whole (``parse_tool_reply``) and pushed in pieces
(``ToolReplyDecoder``), which must add up to the same thing at every split point."""

from __future__ import annotations

import json
from itertools import combinations, pairwise

import pytest

from sdk.tokens import (
    ArgumentsDelta,
    ContentDelta,
    ToolCallStart,
    ToolCallText,
    ToolReply,
    ToolReplyDecoder,
    ToolReplyEvent,
    parse_tool_reply,
)

ARGS = '{"city": "Z\\u00fcrich",  "n": -1.50e2, "tags": ["a"  , "}]\\""], "x": null, "t": true}'
CALLS = (
    f'{{"tool_calls": [{{"name": "f", "arguments": {ARGS}}}, {{"name": "g", "arguments": {{}}}}]}}'
)
RESPONSE = '{"response": "h\\u00e9llo \\ud83d\\ude00 \\"quoted\\"\\n\\\\ end"}'
REPLIES = [
    CALLS,
    RESPONSE,
    '{"response": ""}',
    '{"response": {"label": "x", "n": [1, 2]}}',  # under a response_format schema
    '{"response": 12.5}',
    ' {\n "tool_calls" : [ {"arguments": {"a": 1}, "name": "late"} ] }\n',  # name after args
    '{"tool_calls": [{"name": "no_args"}]}',
    '{"tool_calls": [{"name": "h", "id": "ignored", "arguments": {}}]}',
]


def added_up(events: list[ToolReplyEvent]) -> ToolReply:
    """What a stream client makes of the events (content joined, calls merged by index)."""
    content: str | None = None
    names: dict[int, str] = {}
    arguments: dict[int, str] = {}
    for event in events:
        if isinstance(event, ContentDelta):
            content = (content or "") + event.text
        elif isinstance(event, ToolCallStart):
            assert event.index not in names  # a call starts once
            names[event.index] = event.name
            arguments[event.index] = ""
        else:
            assert event.index in names  # arguments only after the call's start
            arguments[event.index] += event.text
    calls = tuple(ToolCallText(names[i], arguments[i]) for i in sorted(names))
    return ToolReply(content, calls)


def test_a_reply_read_whole() -> None:
    reply = parse_tool_reply(CALLS)
    assert reply == ToolReply(None, (ToolCallText("f", ARGS), ToolCallText("g", "{}")))
    assert json.loads(reply.tool_calls[0].arguments)["city"] == "Zürich"  # the text as written
    assert parse_tool_reply(RESPONSE).content == 'héllo 😀 "quoted"\n\\ end'
    assert parse_tool_reply('{"response": ""}') == ToolReply("")
    assert parse_tool_reply(REPLIES[3]).content == '{"label": "x", "n": [1, 2]}'
    assert parse_tool_reply(REPLIES[5]).tool_calls == (ToolCallText("late", '{"a": 1}'),)
    assert parse_tool_reply(REPLIES[6]).tool_calls == (ToolCallText("no_args", "{}"),)
    assert parse_tool_reply('{"tool_calls": []}') == ToolReply(None)


@pytest.mark.parametrize("reply", REPLIES)
def test_every_split_adds_up_to_the_whole(reply: str) -> None:
    whole = parse_tool_reply(reply)
    whole_events = ToolReplyDecoder().feed(reply)
    assert added_up(whole_events) == whole
    for cuts in [*combinations(range(1, len(reply)), 1), *combinations(range(1, len(reply), 7), 2)]:
        decoder = ToolReplyDecoder()
        bounds = [0, *cuts, len(reply)]
        events = [e for a, b in pairwise(bounds) for e in decoder.feed(reply[a:b])]
        decoder.close()
        assert decoder.reply() == whole
        assert added_up(events) == whole, cuts


def test_text_streams_as_it_is_generated() -> None:
    decoder = ToolReplyDecoder()
    pieces = ['{"resp', 'onse": "', "Hel", "lo \\u00", "e9", " and \\ud83d", "\\ude00", '!"}']
    events = [decoder.feed(piece) for piece in pieces]
    assert events == [
        [],
        [ContentDelta("")],  # the response has begun: an empty one still reads as ""
        [ContentDelta("Hel")],
        [ContentDelta("lo ")],  # an escape is held back until it is complete
        [ContentDelta("é")],
        [ContentDelta(" and ")],  # so is half a surrogate pair
        [ContentDelta("😀")],
        [ContentDelta("!")],
    ]


def test_calls_stream_name_first_then_argument_fragments() -> None:
    decoder = ToolReplyDecoder()
    pieces = ['{"tool_calls": [{"name": "get_', 'weather", "arguments": {"ci', 'ty": "Paris"}}, ']
    pieces += ['{"name": "now", "arguments": {}}]}']
    assert [decoder.feed(piece) for piece in pieces] == [
        [],
        [ToolCallStart(0, "get_weather"), ArgumentsDelta(0, '{"ci')],
        [ArgumentsDelta(0, 'ty": "Paris"}')],
        [ToolCallStart(1, "now"), ArgumentsDelta(1, "{}")],
    ]
    decoder.close()


def test_a_reply_cut_short_keeps_what_it_has() -> None:
    decoder = ToolReplyDecoder()
    decoder.feed('{"tool_calls": [{"name": "f", "arguments": {"x": 1')
    with pytest.raises(ValueError, match="incomplete"):
        decoder.close()
    assert decoder.reply() == ToolReply(None, (ToolCallText("f", '{"x": 1'),))
    decoder = ToolReplyDecoder()
    decoder.feed('{"response": "half \\u00')
    assert decoder.reply() == ToolReply("half ")
    decoder = ToolReplyDecoder()
    decoder.feed('{"tool_calls": [{"name": "unfinish')
    assert decoder.reply() == ToolReply(None)  # a call shows once its name is complete


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "incomplete"),
        ("[]", "expected '{'"),
        ('{"other": 1}', "unexpected key 'other'"),
        ('{"tool_calls": {}}', "expected '\\['"),
        ('{"tool_calls": [1]}', "expected '{'"),
        ('{"tool_calls": [{"name": 3, "arguments": {}}]}', "JSON value"),
        ('{"tool_calls": [{"arguments": {}}]}', "no name"),
        ('{"tool_calls": [1 2]}', "expected"),
        ('{"response": "a"} trailing', "text after the JSON object"),
        ('{"response" "a"}', "expected ':'"),
        ("{1: 2}", "expected a key"),
        ('{"response": "a",}', "expected a key"),
        ('{"response": @}', "JSON value"),
    ],
)
def test_text_that_is_not_a_reply_is_a_value_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_tool_reply(text)
