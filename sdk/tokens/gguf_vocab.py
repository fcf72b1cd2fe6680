"""A GGUF file's tokenizer: the exact ``ModelTokenizer`` of a model on disk.

``tokenizer_from_gguf(path)`` reads the vocabulary, token types, merges, pre-tokenizer name,
BOS/EOS, chat template and context length stored in a GGUF file's metadata (the file llama.cpp,
Ollama and LM Studio run) and builds the model's tokenizer with ``sdk.tokens``' own encoder. It
is the one reader of GGUF vocabularies in the project: the reference server loads its models'
tokenizers with it too. It needs the ``gguf`` package: ``pip install 'llm-sdk[gguf]'``.

Only byte-level BPE vocabularies (``tokenizer.ggml.model == "gpt2"``: GPT-2, SmolLM, Llama 3,
Qwen2, ...) can be expressed as a tiktoken encoding. SentencePiece vocabularies (``"llama"``:
Llama 2, Mistral, Gemma) are refused with a ``TokenizerError``, as are pre-tokenizers this
library does not know (``sdk.tokens.PRE_TOKENIZER_PATTERNS``): a wrong count is never given.

How the GGUF maps onto tiktoken:

* GPT-2 stores token bytes as printable characters (byte 0x20 is ``"Ġ"``); they are mapped
  back to raw bytes, and each token's id becomes its tiktoken rank. That is only correct if the
  merge list is in id order (merge k creates a token with a larger id than merge k-1), which is
  checked.
* Control, user-defined and unknown tokens (types 3, 4, 2) are matched as whole strings before
  BPE, as llama.cpp does; user-defined tokens are matched even when special parsing is off.
* ``tokenizer.ggml.add_bos_token`` / ``add_eos_token`` become ``add_bos`` / ``add_eos``: counts
  then include the ids llama.cpp adds around a prompt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdk.tokens.encoding import pattern_for_pre_tokenizer
from sdk.tokens.errors import TokenizerError
from sdk.tokens.tokenizer import ModelTokenizer

if TYPE_CHECKING:
    from gguf import GGUFReader

__all__ = ["tokenizer_from_gguf"]

# gguf.TokenType values (llama.cpp's llama_token_type)
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_SPECIAL_TYPES = frozenset({_UNKNOWN, _CONTROL, _USER_DEFINED})
# what gguf's reader raises, in numpy's words, on a cut or corrupted file
_READ_ERRORS = (ValueError, IndexError, KeyError, OverflowError, TypeError)


def tokenizer_from_gguf(
    source: str | os.PathLike[str] | GGUFReader,
    *,
    model: str | None = None,
    context_length: int | None = None,
) -> ModelTokenizer:
    """The exact tokenizer of a GGUF model file (a path, or a ``gguf.GGUFReader``).

    >>> tok = tokenizer_from_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
    >>> tok.count_chat([{"role": "user", "content": "Hi"}]), tok.exact  # doctest: +SKIP
    (22, True)
    >>> client.register_tokenizer("smollm2-135m-instruct", tok)  # doctest: +SKIP

    ``model`` names it (default: the file's ``general.name``); ``context_length`` replaces
    the window the model was trained for, e.g. with the ``--ctx-size`` a server runs it with.
    A file that is not a GGUF, is cut short or corrupt, or holds a vocabulary that cannot be
    counted exactly raises ``TokenizerError``.
    """
    reader = _open(source) if isinstance(source, str | os.PathLike) else source
    fields = _Fields(reader)
    kind = fields.text("tokenizer.ggml.model")
    if kind != "gpt2":
        raise TokenizerError(_unsupported_model(kind))
    pre = fields.text("tokenizer.ggml.pre") or "default"  # llama.cpp's fallback too
    pattern = pattern_for_pre_tokenizer(pre)
    tokens = fields.texts("tokenizer.ggml.tokens", required=True)
    types = fields.ints("tokenizer.ggml.token_type") or [_NORMAL] * len(tokens)
    if len(types) != len(tokens):
        raise TokenizerError(f"GGUF metadata has {len(tokens)} tokens but {len(types)} types")
    ranks, special, user_defined = _vocabulary(tokens, types)
    _check_merge_order(fields.texts("tokenizer.ggml.merges", required=True), ranks)

    bos_id = fields.integer("tokenizer.ggml.bos_token_id")
    eos_id = fields.integer("tokenizer.ggml.eos_token_id")
    arch = fields.text("general.architecture")
    trained = fields.integer(f"{arch}.context_length") if arch else None
    return ModelTokenizer(
        model=model or fields.text("general.name") or _stem(source),
        pattern=pattern,
        mergeable_ranks=ranks,
        special_tokens=special,
        n_vocab=len(tokens),
        user_defined_tokens=user_defined,
        chat_template=fields.text("tokenizer.chat_template"),
        bos_token=_token_text(tokens, special, bos_id),
        eos_token=_token_text(tokens, special, eos_id),
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        add_bos=fields.flag("tokenizer.ggml.add_bos_token"),
        add_eos=fields.flag("tokenizer.ggml.add_eos_token"),
        context_length=context_length or trained,
        pre_tokenizer=pre,
        source="gguf",
    )


def _unsupported_model(kind: str | None) -> str:
    if kind == "llama":
        return (
            "tokenizer model 'llama' (SentencePiece) is not supported: only byte-level BPE "
            "('gpt2') vocabularies can be counted exactly"
        )
    return (
        f"tokenizer model {kind!r} is not supported: only byte-level BPE ('gpt2') "
        "vocabularies can be counted exactly"
    )


def _vocabulary(
    tokens: Sequence[str], types: Sequence[int]
) -> tuple[dict[bytes, int], dict[str, int], set[str]]:
    """(mergeable ranks, special tokens, user-defined tokens) of a GGUF token table."""
    ranks: dict[bytes, int] = {}
    special: dict[str, int] = {}
    user_defined: set[str] = set()
    for token_id, (text, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind in _SPECIAL_TYPES:
            if not text:
                raise TokenizerError(f"special token {token_id} is empty")
            special.setdefault(text, token_id)  # a duplicate: the lower id, as llama.cpp
            if kind == _USER_DEFINED:
                user_defined.add(text)
            continue
        raw = _byte_level_to_bytes(text)
        if raw is None or not raw:
            if kind == _NORMAL:
                raise TokenizerError(f"token {token_id} ({text!r}) is not a byte-level BPE token")
            continue  # an unused/byte entry outside the byte alphabet: never produced by BPE
        if raw in ranks:
            raise TokenizerError(f"tokens {ranks[raw]} and {token_id} are both {text!r}")
        ranks[raw] = token_id
    return ranks, special, user_defined


# --- reading ----------------------------------------------------------------------------------


def _open(path: str | os.PathLike[str]) -> GGUFReader:
    try:
        import gguf
    except ImportError:
        raise TokenizerError(
            "reading GGUF files needs the gguf package: pip install 'llm-sdk[gguf]'"
        ) from None
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"GGUF file not found: {p}")
    with p.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise TokenizerError(f"{p.name} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    try:
        return gguf.GGUFReader(p)  # it checks that every tensor's data is in the file
    except _READ_ERRORS as exc:
        raise TokenizerError(f"{p.name} is truncated or corrupt: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class _Fields:
    """Metadata values of a reader as checked Python values."""

    def __init__(self, reader: GGUFReader) -> None:
        self._fields: Mapping[str, Any] = reader.fields

    def _get(self, key: str) -> Any:
        field = self._fields.get(key)
        if field is None:
            return None
        try:
            return field.contents()
        except _READ_ERRORS as exc:
            raise TokenizerError(f"GGUF metadata {key} is unreadable: {_first_line(exc)}") from exc

    def _typed(self, key: str, kind: type, what: str) -> Any:
        value = self._get(key)
        if value is not None and not _is(value, kind):
            raise TokenizerError(f"GGUF metadata {key} should be {what}, got {_short(value)}")
        return value

    def text(self, key: str) -> str | None:
        value: str | None = self._typed(key, str, "text")
        return value

    def integer(self, key: str) -> int | None:
        value: int | None = self._typed(key, int, "an integer")
        return value

    def flag(self, key: str) -> bool:
        return bool(self._typed(key, bool, "true or false"))

    def texts(self, key: str, *, required: bool = False) -> list[str]:
        return self._list(key, str, "text", required)

    def ints(self, key: str) -> list[int]:
        return self._list(key, int, "integer", False)

    def _list(self, key: str, kind: type, what: str, required: bool) -> list[Any]:
        value = self._get(key)
        if value is None:
            if required:
                raise TokenizerError(f"GGUF metadata has no {key}")
            return []
        if not isinstance(value, list) or not all(_is(item, kind) for item in value):
            raise TokenizerError(f"GGUF metadata {key} should be a list of {what}s")
        return value


def _is(value: object, kind: type) -> bool:
    # bool is an int to Python, but a flag is not a count in GGUF
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _stem(source: object) -> str:
    return Path(source).stem if isinstance(source, str | os.PathLike) else "gguf"


@cache
def _printable_to_byte() -> dict[str, int]:
    """GPT-2's table: bytes that print as themselves keep their code point, the other 68 are
    shifted to U+0100 and up, in byte order (so 0x20, the space, becomes "Ġ")."""
    direct = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {chr(b): b for b in direct}
    shifted = (b for b in range(256) if chr(b) not in table)
    table.update({chr(0x100 + n): b for n, b in enumerate(shifted)})
    return table


def _byte_level_to_bytes(text: str) -> bytes | None:
    table = _printable_to_byte()
    try:
        return bytes(table[char] for char in text)
    except KeyError:
        return None


def _check_merge_order(merges: Sequence[str], ranks: Mapping[bytes, int]) -> None:
    # tiktoken merges the adjacent pair whose *concatenation* has the lowest rank; llama.cpp
    # applies the merge with the lowest index. Using ids as ranks is equivalent only when
    # merge k produces a token whose id grows with k.
    previous = -1
    for index, merge in enumerate(merges):
        left, sep, right = merge.partition(" ")
        joined = _byte_level_to_bytes(left + right)
        token_id = ranks.get(joined) if sep and joined is not None else None
        if token_id is None:
            raise TokenizerError(f"merge {index} ({merge!r}) does not produce a known token")
        if token_id <= previous:
            raise TokenizerError(
                f"merge {index} ({merge!r}) creates token {token_id}, after a merge that "
                f"created token {previous}: merges are not in id order, so token ids cannot "
                "serve as BPE ranks"
            )
        previous = token_id


def _token_text(tokens: Sequence[str], special: Mapping[str, int], token_id: int | None) -> str:
    """The text of a BOS/EOS token (a special token's own text, a normal token's bytes)."""
    if token_id is None:
        return ""
    if not 0 <= token_id < len(tokens):
        raise TokenizerError(f"GGUF metadata names token {token_id}, beyond the vocabulary")
    text = tokens[token_id]
    raw = None if text in special else _byte_level_to_bytes(text)
    return text if raw is None else raw.decode("utf-8", errors="replace")
