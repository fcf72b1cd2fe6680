"""Prefix affinity's decisions (``deploy.affinity``): the text a request is routed by, the
index of what went where, and which replicas a request prefers. No Ray, no model."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from server_ref.deploy.affinity import PrefixIndex, preferred_replicas, routing_text

SYSTEM = {"role": "system", "content": "You are the assistant of a bakery. " * 3}


def chat(messages: list[dict[str, Any]]) -> bytes:
    return json.dumps({"model": "m", "messages": messages}).encode()


def test_a_later_turn_starts_with_the_text_of_the_earlier_one() -> None:
    turn1 = [SYSTEM, {"role": "user", "content": "Do you sell rye bread?"}]
    turn2 = [*turn1, {"role": "assistant", "content": "Yes."}, {"role": "user", "content": "When?"}]
    first, second = (
        routing_text("/v1/chat/completions", chat(turn1)),
        routing_text("/v1/chat/completions", chat(turn2)),
    )
    assert first and second and second.startswith(first) and len(second) > len(first)


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/v1/completions", {"prompt": "Once upon"}, "Once upon"),
        ("/v1/completions", {"prompt": ["Once upon"]}, "Once upon"),
        ("/v1/completions", {"prompt": [1, 2, 3]}, "1,2,3"),
        ("/v1/completions", {"prompt": ["a", "b"]}, None),  # a batch: no one prefix
        ("/v1/completions", {"prompt": ""}, None),
        ("/v1/chat/completions", {"messages": "not a list"}, None),
        ("/v1/embeddings", {"input": "text"}, None),
        ("/v1/models", {}, None),
    ],
)
def test_routing_text_of_each_kind_of_request(
    path: str, body: dict[str, Any], expected: str | None
) -> None:
    assert routing_text(path, json.dumps(body).encode()) == expected


def test_content_parts_and_roles_count() -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    plain = [{"role": "user", "content": "hi"}]
    system = [{"role": "system", "content": "hi"}]
    path = "/v1/chat/completions"
    assert routing_text(path, chat(parts)) == routing_text(path, chat(plain))
    assert routing_text(path, chat(system)) != routing_text(path, chat(plain))


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b""])
def test_bodies_the_server_rejects_have_no_text(body: bytes) -> None:
    assert routing_text("/v1/chat/completions", body) is None


def test_index_matches_whole_chunks_of_the_longest_prefix() -> None:
    index = PrefixIndex(chunk_chars=4)
    index.insert("abcdefgh", "A")
    index.insert("abcdXXXX", "B")
    assert index.match("abcdefgh-more") == (8, {"A"})
    assert index.match("abcdZZZZ") == (4, {"A", "B"})
    assert index.match("abcdXXXX", among=["A"]) == (4, {"A"})
    assert index.match("zzzzabcd") == (0, set())
    assert index.match("abc") == (0, set())  # shorter than a chunk


def test_index_forgets_the_least_recently_used_and_the_gone() -> None:
    index = PrefixIndex(chunk_chars=2, max_chunks=4)
    index.insert("aabb", "A")  # 2 keys
    index.insert("ccdd", "B")  # 2 keys: full
    assert index.match("aabb") == (4, {"A"})  # A's keys are now the most recent
    index.insert("eeff", "B")  # evicts B's "ccdd"
    assert index.match("ccdd") == (0, set())
    assert index.match("aabb") == (4, {"A"})
    assert index.sizes["B"] == 2
    index.retain(["B"])
    assert index.match("aabb") == (0, set()) and "A" not in index.sizes


def test_a_conversation_prefers_the_replica_that_has_its_prefix() -> None:
    index = PrefixIndex(chunk_chars=8)
    index.insert("system prompt, then user turn one", "A")
    text = "system prompt, then user turn one, reply, turn two"
    assert preferred_replicas(text, ["A", "B"], index, {"A": 3, "B": 0}) == ["A"]


def test_an_overloaded_holder_is_passed_over() -> None:
    index = PrefixIndex(chunk_chars=8)
    index.insert("system prompt, then user turn one", "A")
    text = "system prompt, then user turn one, reply"
    lens = {"A": 9, "B": 0}
    assert preferred_replicas(text, ["A", "B"], index, lens, max_imbalance=8) == []
    assert preferred_replicas(text, ["A", "B"], index, lens, max_imbalance=9) == ["A"]
    # queue lengths Serve does not know yet do not count as overload
    assert preferred_replicas(text, ["A", "B"], index, {"A": None, "B": 0}) == ["A"]


def test_a_replica_nothing_was_sent_to_lately_counts_as_idle() -> None:
    """Its queue length went stale (``None``): the loaded holder is passed over all the same,
    or every conversation that shares a system prompt would pile onto one replica."""
    index = PrefixIndex(chunk_chars=8)
    index.insert("system prompt, then user turn one", "A")
    text = "system prompt, then another conversation"
    lens = {"A": 5, "B": None}
    assert preferred_replicas(text, ["A", "B"], index, lens, max_imbalance=2) == []
    assert preferred_replicas(text, ["A", "B"], index, lens, max_imbalance=5) == ["A"]


def test_new_text_prefers_the_least_loaded_then_the_least_indexed() -> None:
    index = PrefixIndex(chunk_chars=4)
    index.insert("aaaabbbbcccc", "A")
    index.insert("dddd", "B")
    lens: dict[str, int | None] = {"A": 0, "B": 0, "C": 0}
    assert preferred_replicas("zzzzzzzz", ["A", "B", "C"], index, lens) == ["C"]
    assert preferred_replicas("zzzzzzzz", ["A", "B"], index, lens) == ["B"]
    assert preferred_replicas("zzzzzzzz", ["A", "B"], index, {"A": 0, "B": 1}) == ["A"]
    assert preferred_replicas("zzzzzzzz", ["A", "B"], index, {"A": None, "B": 1}) == ["A"]


@pytest.mark.parametrize("text", [None, ""])
def test_no_text_no_preference(text: str | None) -> None:
    assert preferred_replicas(text, ["A", "B"], PrefixIndex(), {}) == []


def test_conversations_stay_put_and_spread_over_the_replicas() -> None:
    """Forty conversations of four turns, interleaved at random, through the decision and
    the index as the router drives them (the first preferred replica takes the request)."""
    rng = random.Random(0)
    index = PrefixIndex()
    replicas = ["A", "B"]
    histories = {
        n: [{"role": "user", "content": f"Customer {n} asks about rye."}] for n in range(40)
    }
    placed: dict[int, set[str]] = {n: set() for n in histories}
    turns = [n for n in histories for _ in range(4)]
    rng.shuffle(turns)
    for n in turns:
        text = routing_text("/v1/chat/completions", chat(histories[n]))
        chosen = preferred_replicas(text, replicas, index, {"A": 0, "B": 0})[0]
        assert text is not None
        index.insert(text, chosen)
        placed[n].add(chosen)
        histories[n] += [
            {"role": "assistant", "content": "We bake it daily."},
            {"role": "user", "content": "Thanks, and on Sundays?"},
        ]
    assert all(len(where) == 1 for where in placed.values())
    per_replica = [sum(r in where for where in placed.values()) for r in replicas]
    assert min(per_replica) >= 15, per_replica
