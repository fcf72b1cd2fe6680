"""The delta merge rules (``sdk._protocol.deltas``), piece by piece."""

from __future__ import annotations

from typing import Any

import pytest

from sdk._protocol.accumulate import ChatCompletionAccumulator
from sdk._protocol.deltas import finish, merge
from sdk.types import ChatCompletionChunk, ChoiceDelta


def merged(*deltas: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for delta in deltas:
        merge(state, delta.items())
    return finish(state)


def test_text_is_joined_identifiers_kept_nulls_ignored() -> None:
    assert merged(
        {"role": "assistant", "content": "Hel", "refusal": None},
        {"role": "assistant", "content": None},
        {"content": "lo", "name": "bot"},
        {"name": "bot"},
    ) == {"role": "assistant", "content": "Hello", "name": "bot"}
    assert merged({"role": ""}, {"role": "assistant"}) == {"role": "assistant"}


def test_objects_merge_lists_extend_numbers_replace() -> None:
    assert merged(
        {"audio": {"id": "a1", "expires_at": 5, "data": "AA"}, "annotations": [{"n": 1}]},
        {"audio": {"id": "a1", "expires_at": 6, "data": "BB"}, "annotations": [{"n": 2}]},
        {"x_flag": True, "x_score": 1},
        {"x_flag": False, "x_score": 2.5},
    ) == {
        "audio": {"id": "a1", "expires_at": 6, "data": "AABB"},
        "annotations": [{"n": 1}, {"n": 2}],
        "x_flag": False,
        "x_score": 2.5,
    }
    # a value of another kind replaces what was there
    assert merged({"x": "text"}, {"x": {"a": "b"}}, {"x": [1]}) == {"x": [1]}
    assert merged({"x": [1]}, {"x": "t"}) == {"x": "t"}


def test_tool_calls_merge_by_index() -> None:
    assert merged(
        {"tool_calls": [{"index": 1, "id": "b", "type": "function", "function": {"name": "g"}}]},
        {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x"'}}]},
        {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": ": 1}"}}]},
    ) == {
        "tool_calls": [
            {"id": "a", "function": {"name": "f", "arguments": '{"x": 1}'}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}},
        ]
    }


def test_tool_calls_without_index_follow_their_ids() -> None:
    assert merged(
        {"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{"}}]},
        {"tool_calls": [{"function": {"arguments": "}"}}]},
        {"tool_calls": [{"id": "a", "function": {"arguments": ""}}]},
        {"tool_calls": [{"id": "b", "custom": {"name": "sql", "input": "SEL"}}]},
        {"tool_calls": [{"custom": {"input": "ECT"}}]},
        {"tool_calls": [{"extra": 1}]},
    ) == {
        "tool_calls": [
            {"id": "a", "function": {"name": "f", "arguments": "{}"}},
            {"id": "b", "custom": {"name": "sql", "input": "SELECT"}, "extra": 1},
        ]
    }
    # a call that never got an id still has one (empty), like a non-streamed reply
    assert merged({"tool_calls": [{"function": {"name": "f"}}]}) == {
        "tool_calls": [{"id": "", "function": {"name": "f", "arguments": ""}}]
    }


def test_tool_calls_that_are_not_a_list_are_merged_as_values() -> None:
    assert merged({"tool_calls": {"odd": "a"}}, {"tool_calls": {"odd": "b"}}) == {
        "tool_calls": {"odd": "ab"}
    }
    # an object after calls replaces them rather than being merged into them
    assert merged({"tool_calls": [{"index": 0, "id": "a"}]}, {"tool_calls": {"x": 1}}) == {
        "tool_calls": {"x": 1}
    }


@pytest.mark.parametrize("reasoning_key", ["reasoning_content", "reasoning"])
def test_reasoning_deltas_accumulate(reasoning_key: str) -> None:
    acc = ChatCompletionAccumulator()
    base = {"id": "c", "created": 1, "model": "m", "object": "chat.completion.chunk"}
    for delta in (
        {"role": "assistant", reasoning_key: "Let me "},
        {reasoning_key: "think."},
        {"content": "4"},
    ):
        acc.add(
            ChatCompletionChunk.model_validate({**base, "choices": [{"index": 0, "delta": delta}]})
        )
    message = acc.result().choices[0].message
    assert getattr(message, reasoning_key) == "Let me think." and message.content == "4"


def test_models_inside_deltas_are_merged_as_their_fields() -> None:
    delta = ChoiceDelta.model_validate(
        {"annotations": [{"type": "url_citation", "url_citation": {"url": "u"}}]}
    )
    state: dict[str, Any] = {}
    merge(state, [("delta", delta), ("delta", delta)])
    done = finish(state)
    assert (
        done["delta"]["annotations"] == [{"type": "url_citation", "url_citation": {"url": "u"}}] * 2
    )
