"""sdk.tokens.encoding: building encodings, rank files, and the single-regex pre-tokenizers."""

from __future__ import annotations

import hashlib
import random

import pytest
import regex

from sdk.tokens import (
    PRE_TOKENIZER_PATTERNS,
    TokenizerError,
    build_encoding,
    decode_bytes,
    dump_ranks,
    encode_text,
    parse_ranks,
    pattern_for_pre_tokenizer,
    ranks_sha256,
    vocab_size,
)

BYTES = {bytes([b]): b for b in range(256)}


def toy_ranks(*merged: bytes) -> dict[bytes, int]:
    """All 256 bytes, then the given multi-byte tokens in merge order."""
    ranks = dict(BYTES)
    for token in merged:
        ranks[token] = len(ranks)
    return ranks


# --- build_encoding ---------------------------------------------------------------------------


def test_build_encoding_merges_and_special_tokens() -> None:
    ranks = toy_ranks(b"he", b"ll", b"hell", b"hello", b" w")
    enc = build_encoding("toy", pattern_for_pre_tokenizer("gpt2"), ranks, {"<eos>": 300})

    ids = encode_text(enc, "hello world<eos>")

    assert ids[0] == ranks[b"hello"]
    assert ids[1] == ranks[b" w"]
    assert ids[-1] == 300
    assert decode_bytes(enc, ids) == b"hello world<eos>"


def test_special_text_is_plain_text_when_not_allowed() -> None:
    enc = build_encoding("toy", pattern_for_pre_tokenizer("gpt2"), toy_ranks(), {"<eos>": 256})

    assert encode_text(enc, "<eos>", allowed_special=set()) == list(b"<eos>")
    assert encode_text(enc, "<eos>", allowed_special={"<eos>"}) == [256]


def test_missing_bytes_get_placeholders_that_encode_text_drops() -> None:
    ranks = {token: rank for token, rank in BYTES.items() if token != b"\x04"}
    special = {"<s>": 256}
    enc = build_encoding("toy", pattern_for_pre_tokenizer("gpt2"), ranks, special)
    n_vocab = vocab_size(ranks, special)

    raw = encode_text(enc, "a\x04b")
    assert max(raw) >= n_vocab  # the placeholder, so tiktoken can encode the byte at all
    assert encode_text(enc, "a\x04b", n_vocab=n_vocab) == [ord("a"), ord("b")]


@pytest.mark.parametrize(
    ("ranks", "special", "message"),
    [
        ({}, {}, "no mergeable tokens"),
        ({b"a": 0, b"b": 0}, {}, "share id 0"),
        ({b"a": 0}, {"<s>": 0}, "share id 0"),
        ({b"a": -1}, {}, "ids are integers"),
        ({b"a": True}, {}, "ids are integers"),
        ({b"": 1}, {}, "non-empty bytes"),
        ({b"a": 0}, {"": 1}, "non-empty string"),
    ],
)
def test_build_encoding_rejects_bad_vocabularies(
    ranks: dict[bytes, int], special: dict[str, int], message: str
) -> None:
    with pytest.raises(TokenizerError, match=message):
        build_encoding("bad", r"\S+|\s+", ranks, special)


def test_build_encoding_rejects_a_bad_pattern() -> None:
    with pytest.raises(TokenizerError, match="invalid pre-tokenizer pattern"):
        build_encoding("bad", r"(unclosed", toy_ranks(), {})


def test_unknown_pre_tokenizer_names_the_known_ones() -> None:
    with pytest.raises(TokenizerError, match=r"unknown pre-tokenizer 'nope'.*smollm"):
        pattern_for_pre_tokenizer("nope")


@pytest.mark.parametrize("bad_id", [12345, -1])
def test_decoding_an_unknown_id_is_a_tokenizer_error(bad_id: int) -> None:
    enc = build_encoding("toy", r"\S+|\s+", toy_ranks(), {})
    with pytest.raises(TokenizerError, match=str(bad_id)):
        decode_bytes(enc, [65, bad_id])


def test_decoding_a_placeholder_id_is_refused_given_n_vocab() -> None:
    ranks = {token: rank for token, rank in BYTES.items() if token != b"\x04"}
    enc = build_encoding("toy", r"\S+|\s+", ranks, {})
    placeholder = enc.encode("\x04")[0]

    assert decode_bytes(enc, [placeholder]) == b"\x04"
    with pytest.raises(TokenizerError, match=str(placeholder)):
        decode_bytes(enc, [placeholder], n_vocab=vocab_size(ranks, {}))


# --- rank files -------------------------------------------------------------------------------


def test_rank_file_round_trip_and_hash() -> None:
    ranks = toy_ranks(b" the", b"\xe4\xb8", "中文".encode(), b"\n\n")
    data = dump_ranks(ranks)

    assert parse_ranks(data) == ranks
    assert parse_ranks(data.decode("ascii")) == ranks
    assert data.splitlines()[0] == b"AA== 0"  # tiktoken's own format: base64, space, rank
    assert ranks_sha256(ranks) == hashlib.sha256(data).hexdigest()
    assert ranks_sha256(dict(reversed(ranks.items()))) == ranks_sha256(ranks)  # order-free


def test_a_parsed_rank_file_builds_the_same_encoding() -> None:
    ranks = toy_ranks(b"ab", b"abc")
    pattern = pattern_for_pre_tokenizer("gpt2")
    original = build_encoding("a", pattern, ranks, {})
    rebuilt = build_encoding("b", pattern, parse_ranks(dump_ranks(ranks)), {})

    assert rebuilt.encode("abc abcab") == original.encode("abc abcab")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"YQ==\n", "expected 'base64 rank'"),
        (b"YQ== 0 1\n", "expected 'base64 rank'"),
        (b"!!!! 0\n", "line 1"),
        (b"YQ== x\n", "line 1"),
        (b"YQ== 0\nYQ== 1\n", "appears twice"),
    ],
)
def test_parse_ranks_rejects_malformed_files(data: bytes, message: str) -> None:
    with pytest.raises(TokenizerError, match=message):
        parse_ranks(data)


# --- pre-tokenizer patterns -------------------------------------------------------------------

_GPT2_STAGE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"

# llama.cpp's staged definitions (src/llama-vocab.cpp), applied the way llama.cpp applies them.
STAGED = {
    "smollm": [r"\p{N}", _GPT2_STAGE],
    "default": [r"[\p{P}\$\+<=>\^~\|]+", _GPT2_STAGE, r"\p{N}+", r"[0-9][0-9][0-9]"],
}


def staged_split(text: str, stages: list[str]) -> list[str]:
    """Each stage splits every fragment left by the previous one; text between two matches
    becomes a fragment of its own (llama.cpp's ``unicode_regex_split``)."""
    fragments = [text]
    for stage in stages:
        out: list[str] = []
        for fragment in fragments:
            end = 0
            for match in regex.finditer(stage, fragment):
                if match.start() > end:
                    out.append(fragment[end : match.start()])
                if match.end() > match.start():
                    out.append(match.group())
                end = match.end()
            if end < len(fragment):
                out.append(fragment[end:])
        fragments = out
    return fragments


def single_split(name: str, text: str) -> list[str]:
    return regex.findall(pattern_for_pre_tokenizer(name), text)


ALPHABET = [
    *"abZé中'sldt", "ll", "re", "ve",  # letters and contraction material
    *"0129", "٣", "½", "Ⅻ",  # ASCII digits, an Arabic-Indic digit, other \p{N}
    " ", "  ", "\t", "\n", "\r", "\u3000", "\u00a0",  # whitespace, incl. non-ASCII
    *"!$+<=>^~|`-._@#", "🎉", "\u0378",  # punctuation, symbols, emoji, unassigned
]  # fmt: skip


DIGIT_HEAVY = [*"0123", "٣", "½", " ", "  ", "\t", "a", "!", "'"]


def random_texts(count: int, seed: int, alphabet: list[str] = ALPHABET) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(alphabet, k=rng.randint(1, 14))) for _ in range(count)]


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("a  1", ["a", "  ", "1"]),  # whitespace before a digit is a piece of its own
        ("a 1", ["a", " ", "1"]),
        ("x = 12345", ["x", " =", " ", "1", "2", "3", "4", "5"]),
        ("a  b", ["a", " ", " b"]),  # unchanged GPT-2 behaviour away from digits
        ("it's 3 o'clock\n\n", ["it", "'s", " ", "3", " o", "'", "clock", "\n\n"]),
        ("v2\t\t9", ["v", "2", "\t\t", "9"]),
    ],
)
def test_smollm_splits_digits_first(text: str, pieces: list[str]) -> None:
    assert staged_split(text, STAGED["smollm"]) == pieces  # the reference really does this
    assert single_split("smollm", text) == pieces


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("a  1234567", ["a", " ", " ", "123", "456", "7"]),
        ("it's", ["it", "'", "s"]),
        ("x  !", ["x", "  ", "!"]),
        ("٣12345", ["٣", "123", "45"]),
    ],
)
def test_default_pre_tokenizer_folds_four_stages(text: str, pieces: list[str]) -> None:
    assert staged_split(text, STAGED["default"]) == pieces
    assert single_split("default", text) == pieces


@pytest.mark.parametrize("alphabet", [ALPHABET, DIGIT_HEAVY], ids=["mixed", "digit-heavy"])
@pytest.mark.parametrize("name", sorted(STAGED))
def test_single_regex_equals_staged_split_on_random_text(name: str, alphabet: list[str]) -> None:
    for text in random_texts(3000, seed=len(name), alphabet=alphabet):
        assert single_split(name, text) == staged_split(text, STAGED[name]), repr(text)


def test_llama3_and_qwen2_digit_grouping() -> None:
    assert single_split("llama3", "x 12345") == ["x", " ", "123", "45"]
    assert single_split("qwen2", "x 123") == ["x", " ", "1", "2", "3"]


@pytest.mark.parametrize("name", sorted(PRE_TOKENIZER_PATTERNS))
def test_every_pattern_compiles_in_tiktoken_and_loses_no_text(name: str) -> None:
    # tiktoken silently drops text no alternative matches, so a round trip proves coverage.
    enc = build_encoding(name, PRE_TOKENIZER_PATTERNS[name], toy_ranks(), {})
    for text in random_texts(200, seed=7):
        assert enc.decode(enc.encode(text)) == text


def test_tiktoken_sees_the_same_pieces() -> None:
    # With a token for two spaces, "a  1" must use it: the run before the digit stays whole.
    ranks = toy_ranks(b"  ", b" 1")
    enc = build_encoding("toy", pattern_for_pre_tokenizer("smollm"), ranks, {})

    assert enc.encode("a  1") == [ord("a"), ranks[b"  "], ord("1")]
    gpt2 = build_encoding("toy", pattern_for_pre_tokenizer("gpt2"), ranks, {})
    assert gpt2.encode("a  1") == [ord("a"), ord(" "), ranks[b" 1"]]
