"""IncrementalDetokenizer: never a partial UTF-8 character, never any part of a stop string."""

from __future__ import annotations

import itertools

import pytest

from server_ref.engine.detokenizer import IncrementalDetokenizer

MULTIBYTE = "aé€😀b"  # 1-, 2-, 3- and 4-byte characters


def run(pieces: list[bytes], stop: tuple[str, ...] = (), flush: bool = True) -> list[str]:
    """Feed every piece, then flush; return what each call emitted."""
    d = IncrementalDetokenizer(stop)
    out = [d.add(p) for p in pieces]
    if flush:
        out.append(d.flush())
    assert "".join(out) == d.text
    return out


def splits(data: bytes, cuts: int) -> list[list[bytes]]:
    """Every way to cut ``data`` into ``cuts + 1`` (possibly empty) pieces."""
    out = []
    for points in itertools.combinations_with_replacement(range(len(data) + 1), cuts):
        bounds = (0, *points, len(data))
        out.append([data[a:b] for a, b in itertools.pairwise(bounds)])
    return out


def pieces_of(*texts: str) -> list[bytes]:
    return [t.encode() for t in texts]


@pytest.mark.parametrize("cuts", [1, 2, 3])
def test_multibyte_characters_split_at_every_point_are_never_emitted_partially(cuts: int) -> None:
    data = MULTIBYTE.encode()
    for pieces in splits(data, cuts):
        out = run(pieces)
        assert "".join(out) == MULTIBYTE
        assert all("\ufffd" not in o for o in out), pieces
        assert "".join(out[:-1]) == MULTIBYTE  # complete input: nothing was waiting for flush


def test_each_byte_as_its_own_token() -> None:
    out = run([bytes([b]) for b in "😀".encode()])
    assert out == ["", "", "", "😀", ""]


@pytest.mark.parametrize("cuts", [1, 2])
def test_multibyte_split_with_a_multibyte_stop_string(cuts: int) -> None:
    text = "x€y😀z"
    for pieces in splits(text.encode(), cuts):
        out = run(pieces, stop=("😀",))
        assert "".join(out) == "x€y", pieces
        assert all("\ufffd" not in o for o in out)


def test_stop_string_spanning_several_tokens_is_never_emitted() -> None:
    out = run(pieces_of("Hello", " wo", "r", "ld", " and more"), stop=("world",))
    assert "".join(out) == "Hello "
    assert out[0] == "Hello"
    assert out[1] == " "  # "wo" may still become "world": held back


@pytest.mark.parametrize("split", range(1, len("ab<END>cd")))
def test_stop_string_at_every_token_boundary(split: int) -> None:
    text = "ab<END>cd"
    d = IncrementalDetokenizer(("<END>",))
    emitted = d.add(text[:split].encode()) + d.add(text[split:].encode())
    assert emitted == "ab"
    assert d.stopped
    assert d.text == "ab"


def test_stop_string_inside_one_token_keeps_the_text_before_it() -> None:
    d = IncrementalDetokenizer(("STOP",))
    assert d.add(b"one ") == "one "
    assert d.add(b"two STOP three") == "two "
    assert d.stopped
    assert d.text == "one two "


def test_text_after_stop_is_dropped() -> None:
    d = IncrementalDetokenizer(("\n",))
    assert d.add(b"line\nnext") == "line"
    assert d.stopped
    assert d.add(b"more") == ""
    assert d.flush() == ""
    assert d.text == "line"


def test_partial_stop_prefix_is_released_when_it_does_not_complete() -> None:
    d = IncrementalDetokenizer(("</s>",))
    assert d.add(b"a <") == "a "
    assert d.add(b"/") == ""
    assert d.add(b"x") == "</x"
    assert not d.stopped
    assert d.text == "a </x"


def test_partial_stop_prefix_is_released_on_flush() -> None:
    d = IncrementalDetokenizer(("</s>",))
    assert d.add(b"end </") == "end "
    assert d.flush() == "</"
    assert d.text == "end </"
    assert not d.stopped


def test_held_prefix_can_restart_inside_itself() -> None:
    # "aab" with stop "ab": the first "a" is not part of the stop string, the second is
    d = IncrementalDetokenizer(("ab",))
    assert d.add(b"a") == ""
    assert d.add(b"a") == "a"
    assert d.add(b"b") == ""
    assert d.stopped
    assert d.text == "a"


@pytest.mark.parametrize(
    ("pieces", "stop", "expected"),
    [
        (["xx END yy STOP"], ("STOP", "END"), "xx "),
        (["xx STOP yy END"], ("STOP", "END"), "xx "),
        (["ab", "cd"], ("cd", "bc"), "a"),  # "bc" completes first, inside the token stream
        (["abcd"], ("cd", "bcd"), "a"),  # same token: the earlier start wins
        (["he", "llo"], ("lo", "hello"), ""),
    ],
)
def test_several_stop_strings_the_earliest_wins(
    pieces: list[str], stop: tuple[str, ...], expected: str
) -> None:
    assert "".join(run(pieces_of(*pieces), stop)) == expected


def test_longest_possible_prefix_of_any_stop_string_is_held() -> None:
    d = IncrementalDetokenizer(("xyz", "yq"))
    assert d.add(b"axy") == "a"  # "xy" could become "xyz"
    assert d.add(b"q") == "x"  # "yq" completed, "x" was not part of it
    assert d.stopped


def test_empty_stop_strings_are_ignored() -> None:
    assert run(pieces_of("a", "b"), stop=("",)) == ["a", "b", ""]


def test_no_stop_strings_emit_everything_immediately() -> None:
    assert run(pieces_of("Hel", "lo", ", ", "world")) == ["Hel", "lo", ", ", "world", ""]


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        ([b"ok", b"\xe2\x82"], "ok\ufffd"),  # truncated 3-byte character at the end
        ([b"\xf0\x9f"], "\ufffd"),
        ([b"a\xffb"], "a\ufffdb"),  # a byte that never starts a character
    ],
)
def test_invalid_utf8_becomes_replacement_characters(pieces: list[bytes], expected: str) -> None:
    assert "".join(run(pieces)) == expected


def test_truncated_character_is_only_replaced_on_flush() -> None:
    d = IncrementalDetokenizer()
    assert d.add(b"ok\xe2\x82") == "ok"
    assert d.flush() == "\ufffd"


def test_a_second_flush_emits_nothing() -> None:
    d = IncrementalDetokenizer()
    assert d.add(b"hi") == "hi"
    assert d.flush() == ""
    assert d.flush() == ""
    assert d.text == "hi"
