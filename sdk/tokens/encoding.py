"""Exact BPE encodings: a tiktoken ``Encoding`` built from a model's own vocabulary.

A byte-level BPE tokenizer is fully described by three things, and this module is the one place
that turns them into a working encoder, for the server and for the client alike:

* a pre-tokenizer *pattern* (one regex that cuts text into pieces before BPE),
* the *mergeable ranks* (token bytes -> id; a lower id merges first),
* the *special tokens* (text -> id, matched before the pattern runs).

Because both sides build their encoder with :func:`build_encoding` from the same three inputs,
token counts computed on the client equal the server's.

The ranks travel in tiktoken's own file format (``base64(token) rank`` per line, see
:func:`dump_ranks` / :func:`parse_ranks`) with a sha256 so a client can verify what it got.

llama.cpp names its pre-tokenizers (GGUF key ``tokenizer.ggml.pre``) and applies some of them in
*stages*: each regex splits the pieces left by the previous one. tiktoken takes a single regex,
so :data:`PRE_TOKENIZER_PATTERNS` holds, for each name, one regex that cuts text exactly like
the staged version (see the comments on each pattern for how the stages were folded in).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping, Set as AbstractSet
from types import MappingProxyType
from typing import Literal

import tiktoken

from sdk.tokens.errors import TokenizerError

__all__ = [
    "PRE_TOKENIZER_PATTERNS",
    "build_encoding",
    "decode_bytes",
    "dump_ranks",
    "encode_text",
    "parse_ranks",
    "pattern_for_pre_tokenizer",
    "ranks_sha256",
    "vocab_size",
]

# --- pre-tokenizer patterns -------------------------------------------------------------------

# GPT-2's pattern. llama.cpp's copy omits the final ``\s+`` but its hand-written matcher has it;
# tiktoken drops text no alternative matches, so the fallback must be spelled out here.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# llama.cpp stages: (1) ``\p{N}`` - every digit becomes its own fragment, (2) GPT-2 inside each
# fragment. Folded into one regex:
# * a digit is a piece of its own, so ``\p{N}`` comes first and `` ?\p{N}+`` disappears;
# * no other alternative can consume a digit, so fragments never leak into each other;
# * ``\s+(?!\S)`` saw "end of fragment" right before a digit, so a whitespace run followed by a
#   digit is taken whole: ``(?![^\s\p{N}])`` ("not followed by a non-space non-digit").
#   Example: "a  1" -> "a", "  ", "1" (GPT-2 alone would give "a", " ", " 1").
_DIGITS_THEN_GPT2 = (
    r"\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"
)

# Llama 3 / tiktoken's cl100k style: case-insensitive contractions, up to 3 digits per piece.
_LLAMA3 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen2: like Llama 3 but one digit per piece.
_QWEN2 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# llama.cpp's fallback ("default") runs four stages: (1) runs of punctuation-like characters
# Q = [\p{P}$+<=>^~|] are cut out, (2) GPT-2 inside the rest, (3) ``\p{N}+`` separates digits
# from the space GPT-2 glued to them, (4) ``[0-9]{3}`` chops ASCII digit runs into threes.
# Folded: Q-runs first; contractions vanish (the apostrophe is in Q); digits never take a
# leading space (" 12" -> " " + "12", the space falls to the final ``\s+``); a digit run yields
# "123" chunks and, between them, whatever precedes the next three ASCII digits; whitespace sees
# "end of fragment" before a Q character.
_Q = r"\p{P}\$\+<=>\^~\|"
_DEFAULT = (
    rf"[{_Q}]+| ?\p{{L}}+|[0-9]{{3}}|(?:(?![0-9]{{3}})\p{{N}})+"
    rf"| ?[^\s\p{{L}}\p{{N}}{_Q}]+|\s+(?![^\s{_Q}])|\s+"
)

PRE_TOKENIZER_PATTERNS: Mapping[str, str] = MappingProxyType(
    {
        "default": _DEFAULT,
        "gpt2": _GPT2,
        "gpt-2": _GPT2,
        "mpt": _GPT2,
        "olmo": _GPT2,
        "jais": _GPT2,
        "smollm": _DIGITS_THEN_GPT2,
        "starcoder": _DIGITS_THEN_GPT2,
        "refact": _DIGITS_THEN_GPT2,
        "command-r": _DIGITS_THEN_GPT2,
        "codeshell": _DIGITS_THEN_GPT2,
        "exaone": _DIGITS_THEN_GPT2,
        "minerva-7b": _DIGITS_THEN_GPT2,
        "llama3": _LLAMA3,
        "llama-v3": _LLAMA3,
        "llama-bpe": _LLAMA3,
        "dbrx": _LLAMA3,
        "smaug-bpe": _LLAMA3,
        "qwen2": _QWEN2,
        "stablelm2": _QWEN2,
    }
)
"""llama.cpp pre-tokenizer name (GGUF ``tokenizer.ggml.pre``) -> one tiktoken-compatible regex."""


def pattern_for_pre_tokenizer(name: str) -> str:
    """The single regex equivalent to llama.cpp's pre-tokenizer ``name``.

    >>> pattern_for_pre_tokenizer("smollm").startswith(r"\\p{N}")
    True
    """
    try:
        return PRE_TOKENIZER_PATTERNS[name]
    except KeyError:
        known = ", ".join(sorted(PRE_TOKENIZER_PATTERNS))
        raise TokenizerError(
            f"unknown pre-tokenizer {name!r}; known pre-tokenizers: {known}"
        ) from None


# --- building ---------------------------------------------------------------------------------


def vocab_size(mergeable_ranks: Mapping[bytes, int], special_tokens: Mapping[str, int]) -> int:
    """One past the highest id in the vocabulary: ids below it are the model's own tokens."""
    return max([*mergeable_ranks.values(), *special_tokens.values()], default=-1) + 1


def build_encoding(
    name: str,
    pattern: str,
    mergeable_ranks: dict[bytes, int],
    special_tokens: dict[str, int],
) -> tiktoken.Encoding:
    """Build a tiktoken ``Encoding`` after checking its inputs.

    Byte-level vocabularies sometimes lack a few single bytes (SmolLM2 has no token for
    ``b"\\x04"``). tiktoken needs every byte to be encodable, so each missing byte gets a
    placeholder id at or above :func:`vocab_size`. No merge can involve such a byte, so merging
    is unaffected; :func:`encode_text` drops the placeholders again, exactly as llama.cpp drops
    bytes it has no token for.

    >>> ranks = {bytes([b]): b for b in range(256)} | {b"ab": 256}
    >>> enc = build_encoding("toy", r"\\w+|\\s+", ranks, {"<eos>": 257})
    >>> enc.encode("ab<eos>", allowed_special="all")
    [256, 257]
    """
    _check_vocabulary(mergeable_ranks, special_tokens)
    ranks = dict(mergeable_ranks)
    next_id = vocab_size(mergeable_ranks, special_tokens)
    for byte in range(256):
        if bytes([byte]) not in ranks:
            ranks[bytes([byte])] = next_id
            next_id += 1
    try:
        return tiktoken.Encoding(
            name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=dict(special_tokens)
        )
    except ValueError as exc:  # the Rust side rejects the regex
        raise TokenizerError(f"invalid pre-tokenizer pattern for {name!r}: {exc}") from exc


def _check_vocabulary(
    mergeable_ranks: Mapping[bytes, int], special_tokens: Mapping[str, int]
) -> None:
    # tiktoken panics (an uncatchable-looking BaseException) on duplicate ids; check first.
    if not mergeable_ranks:
        raise TokenizerError("the vocabulary has no mergeable tokens")
    seen: dict[int, str] = {}
    for token, rank in mergeable_ranks.items():
        if not isinstance(token, bytes) or not token:
            raise TokenizerError(f"mergeable token {token!r} must be non-empty bytes")
        _claim_id(seen, rank, repr(token))
    for text, token_id in special_tokens.items():
        if not isinstance(text, str) or not text:
            raise TokenizerError(f"special token {text!r} must be a non-empty string")
        _claim_id(seen, token_id, repr(text))


def _claim_id(seen: dict[int, str], token_id: int, label: str) -> None:
    if isinstance(token_id, bool) or not isinstance(token_id, int) or token_id < 0:
        raise TokenizerError(f"token {label} has id {token_id!r}; ids are integers >= 0")
    if token_id in seen:
        raise TokenizerError(f"tokens {seen[token_id]} and {label} share id {token_id}")
    seen[token_id] = label


# --- using ------------------------------------------------------------------------------------


def encode_text(
    encoding: tiktoken.Encoding,
    text: str,
    *,
    allowed_special: AbstractSet[str] | Literal["all"] = "all",
    n_vocab: int | None = None,
) -> list[int]:
    """Encode ``text`` the way llama.cpp does: special tokens in ``allowed_special`` are parsed,
    any other special-token text is encoded as plain text, and ids ``>= n_vocab`` (placeholders
    for bytes the vocabulary lacks, see :func:`build_encoding`) are dropped.

    >>> enc = build_encoding("toy", r"\\S+|\\s+", {bytes([b]): b for b in range(256)}, {"<s>": 256})
    >>> encode_text(enc, "a<s>", n_vocab=257), encode_text(enc, "a<s>", allowed_special=set())
    ([97, 256], [97, 60, 115, 62])
    """
    ids = encoding.encode(text, allowed_special=allowed_special, disallowed_special=())
    if n_vocab is None:
        return ids
    return [token for token in ids if token < n_vocab]


def decode_bytes(
    encoding: tiktoken.Encoding, ids: Iterable[int], *, n_vocab: int | None = None
) -> bytes:
    """The bytes behind ``ids`` (special tokens included).

    Ids the encoding does not know, or (given ``n_vocab``) placeholder ids ``>= n_vocab``,
    raise TokenizerError.
    """
    id_list = list(ids)
    if n_vocab is not None and any(not 0 <= token < n_vocab for token in id_list):
        bad = [token for token in id_list if not 0 <= token < n_vocab]
        raise TokenizerError(f"cannot decode token ids {bad[:5]}: not in the vocabulary")
    try:
        return encoding.decode_bytes(id_list)
    except (KeyError, OverflowError, TypeError) as exc:
        bad = [t for t in id_list if not _is_known(encoding, t)]
        raise TokenizerError(
            f"cannot decode token ids {bad[:5] or id_list[:5]}: not in the vocabulary"
        ) from exc


def _is_known(encoding: tiktoken.Encoding, token: int) -> bool:
    try:
        encoding.decode_single_token_bytes(token)
    except (KeyError, OverflowError, TypeError):
        return False
    return True


# --- the rank file ----------------------------------------------------------------------------


def dump_ranks(mergeable_ranks: Mapping[bytes, int]) -> bytes:
    """Serialize ranks in tiktoken's file format: ``base64(token) rank`` per line, by rank.

    >>> dump_ranks({b"a": 0, b" b": 1})
    b'YQ== 0\\nIGI= 1\\n'
    """
    lines = [
        base64.b64encode(token) + b" " + str(rank).encode()
        for token, rank in sorted(mergeable_ranks.items(), key=lambda item: item[1])
    ]
    return b"".join(line + b"\n" for line in lines)


def parse_ranks(data: bytes | str) -> dict[bytes, int]:
    """Parse tiktoken's rank file format (the inverse of :func:`dump_ranks`).

    >>> parse_ranks(b"YQ== 0\\nIGI= 1\\n")
    {b'a': 0, b' b': 1}
    """
    raw = data.encode("ascii", errors="replace") if isinstance(data, str) else data
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise TokenizerError(f"rank file line {number}: expected 'base64 rank', got {line!r}")
        try:
            token = base64.b64decode(fields[0], validate=True)
            rank = int(fields[1])
        except (binascii.Error, ValueError) as exc:
            raise TokenizerError(f"rank file line {number}: {exc}") from exc
        if token in ranks:
            raise TokenizerError(f"rank file line {number}: token {token!r} appears twice")
        ranks[token] = rank
    return ranks


def ranks_sha256(mergeable_ranks: Mapping[bytes, int]) -> str:
    """Hex sha256 of :func:`dump_ranks` output, to check a downloaded rank file."""
    return hashlib.sha256(dump_ranks(mergeable_ranks)).hexdigest()
