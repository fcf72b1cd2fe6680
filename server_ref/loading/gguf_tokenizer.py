"""A GGUF file's vocabulary -> the exact tiktoken encoding and chat template the model expects.

This module only *reads*: the token table, token types, merges and chat template stored under
``tokenizer.*`` in the GGUF metadata. Building the encoder and rendering templates happen in
``sdk.tokens`` so that the client counts tokens with the very same code.

Only byte-level BPE vocabularies (``tokenizer.ggml.model == "gpt2"``: GPT-2, SmolLM, Llama 3,
Qwen2, ...) can be expressed as a tiktoken encoding; SentencePiece models (``"llama"``) are
rejected with a clear error.

How the GGUF maps onto tiktoken:

* GPT-2 stores token bytes as printable characters (byte 0x20 is ``"Ġ"``); they are mapped
  back to raw bytes, and each token's id becomes its tiktoken rank. That is only correct if the
  merge list is in id order (merge k creates a token with a larger id than merge k-1), which
  :func:`load_gguf_tokenizer` checks.
* Control, user-defined and unknown tokens (types 3, 4, 2) are matched as whole strings before
  BPE, as llama.cpp does; user-defined tokens are matched even when special parsing is off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import gguf
import tiktoken

from sdk.tokens import (
    ChatTemplateError,
    TokenizerError,
    build_encoding,
    decode_bytes,
    encode_text,
    pattern_for_pre_tokenizer,
    render_chat,
    render_chat_template,
)

__all__ = ["GGUFTokenizer", "encoding_from_gguf", "load_gguf_tokenizer"]

# gguf.TokenType values (llama.cpp's llama_token_type)
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_SPECIAL_TYPES = frozenset({_UNKNOWN, _CONTROL, _USER_DEFINED})


@dataclass(frozen=True, eq=False)
class GGUFTokenizer:
    """The tokenizer stored in a GGUF file.

    >>> tok = load_gguf_tokenizer("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
    >>> tok.encode("<|im_start|>user")  # doctest: +SKIP
    [1, 4093]
    """

    encoding: tiktoken.Encoding
    pre_tokenizer: str
    pattern: str
    mergeable_ranks: dict[bytes, int]
    special_tokens: dict[str, int]
    user_defined_tokens: frozenset[str]  # matched even with allow_special=False, like llama.cpp
    n_vocab: int
    bos_token_id: int | None
    eos_token_id: int | None
    bos_token: str  # "" when the model has no BOS token
    eos_token: str
    add_bos: bool
    chat_template: str | None
    context_length: int | None

    def encode(self, text: str, *, allow_special: bool = True, add_bos: bool = False) -> list[int]:
        """Token ids for ``text``; ``allow_special=False`` encodes "<|im_end|>" as plain text.

        ``add_bos`` prepends the BOS id; it is off by default because chat templates already
        write the BOS text where the model wants it.
        """
        allowed: frozenset[str] | Literal["all"] = (
            "all" if allow_special else self.user_defined_tokens
        )
        ids = encode_text(self.encoding, text, allowed_special=allowed, n_vocab=self.n_vocab)
        if add_bos and self.bos_token_id is not None:
            ids.insert(0, self.bos_token_id)
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of ``ids`` joined; special tokens appear as their text."""
        return decode_bytes(self.encoding, ids, n_vocab=self.n_vocab)

    def decode(self, ids: Iterable[int]) -> str:
        """``decode_bytes`` as text; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (possibly part of a UTF-8 character)."""
        return self.decode_bytes([token_id])

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        **extra: Any,
    ) -> str:
        """Render ``messages`` with the model's own chat template (sandboxed Jinja2)."""
        if self.chat_template is None:
            raise ChatTemplateError("this model has no chat template (tokenizer.chat_template)")
        return render_chat_template(
            self.chat_template,
            messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            **extra,
        )

    def render_chat(
        self,
        messages: Sequence[object],
        *,
        tools: Sequence[object] | None = None,
        tool_choice: object = None,
        parallel_tool_calls: bool | None = None,
        add_generation_prompt: bool = True,
    ) -> str:
        """A chat request (messages, tools, tool choice) as prompt text with the model's
        template: ``sdk.tokens.render_chat``, which a client's ``count_chat`` renders too."""
        if self.chat_template is None:
            raise ChatTemplateError("this model has no chat template (tokenizer.chat_template)")
        return render_chat(
            self.chat_template,
            messages,
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )


def load_gguf_tokenizer(source: str | os.PathLike[str] | gguf.GGUFReader) -> GGUFTokenizer:
    """Read the tokenizer of a GGUF file (a path, or a reader the model loader already opened).

    >>> tok = load_gguf_tokenizer("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
    >>> tok.decode(tok.encode("Hello world"))  # doctest: +SKIP
    'Hello world'
    """
    reader = source if isinstance(source, gguf.GGUFReader) else _open(source)
    fields = _Fields(reader)

    model = fields.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise TokenizerError(
            f"tokenizer model {model!r} is not supported: only byte-level BPE ('gpt2') "
            "vocabularies can be served with an exact tiktoken encoding"
        )
    tokens: list[str] = fields.need("tokenizer.ggml.tokens")
    types: list[int] = fields.get("tokenizer.ggml.token_type") or [_NORMAL] * len(tokens)
    if len(types) != len(tokens):
        raise TokenizerError(f"{len(tokens)} tokens but {len(types)} token types")
    pre = str(fields.get("tokenizer.ggml.pre") or "default")
    pattern = pattern_for_pre_tokenizer(pre)

    ranks: dict[bytes, int] = {}
    special: dict[str, int] = {}
    user_defined: set[str] = set()
    for token_id, (text, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind in _SPECIAL_TYPES:
            special[text] = token_id
            if kind == _USER_DEFINED:
                user_defined.add(text)
            continue
        raw = _byte_level_to_bytes(text)
        if raw is None:
            if kind == _NORMAL:
                raise TokenizerError(f"token {token_id} ({text!r}) is not a byte-level BPE token")
            continue  # an unused/byte entry outside the byte alphabet: never produced by BPE
        if raw in ranks:
            raise TokenizerError(f"tokens {ranks[raw]} and {token_id} are both {text!r}")
        ranks[raw] = token_id
    _check_merge_order(fields.need("tokenizer.ggml.merges"), ranks)

    encoding = build_encoding(f"gguf-{pre}", pattern, ranks, special)
    bos_id = _optional_int(fields.get("tokenizer.ggml.bos_token_id"))
    eos_id = _optional_int(fields.get("tokenizer.ggml.eos_token_id"))
    arch = fields.get("general.architecture")
    context = fields.get(f"{arch}.context_length") if arch else None
    template = fields.get("tokenizer.chat_template")
    return GGUFTokenizer(
        encoding=encoding,
        pre_tokenizer=pre,
        pattern=pattern,
        mergeable_ranks=ranks,
        special_tokens=special,
        user_defined_tokens=frozenset(user_defined),
        n_vocab=len(tokens),
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        bos_token=_token_text(encoding, bos_id),
        eos_token=_token_text(encoding, eos_id),
        add_bos=bool(fields.get("tokenizer.ggml.add_bos_token") or False),
        chat_template=str(template) if template else None,
        context_length=_optional_int(context),
    )


def encoding_from_gguf(source: str | os.PathLike[str] | gguf.GGUFReader) -> tiktoken.Encoding:
    """Just the tiktoken encoding of a GGUF file's vocabulary.

    Note: ``encoding.encode`` may emit placeholder ids ``>= n_vocab`` for bytes the vocabulary
    lacks; ``load_gguf_tokenizer(...).encode`` drops them like llama.cpp does.
    """
    return load_gguf_tokenizer(source).encoding


# --- reading helpers ---------------------------------------------------------------------------


def _open(path: str | os.PathLike[str]) -> gguf.GGUFReader:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"GGUF file not found: {p}")
    try:
        return gguf.GGUFReader(p)
    except (ValueError, IndexError, OverflowError, TypeError, KeyError) as exc:
        raise TokenizerError(f"{p.name} is not a readable GGUF file: {exc}") from exc


class _Fields:
    """Metadata values of a reader as plain Python objects."""

    def __init__(self, reader: gguf.GGUFReader) -> None:
        self._fields: Mapping[str, Any] = reader.fields

    def get(self, key: str) -> Any:
        field = self._fields.get(key)
        if field is None:
            return None
        try:
            return field.contents()
        except (UnicodeDecodeError, ValueError, IndexError) as exc:
            raise TokenizerError(f"GGUF metadata {key} is unreadable: {exc}") from exc

    def need(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise TokenizerError(f"GGUF metadata has no {key}")
        return value


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


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _token_text(encoding: tiktoken.Encoding, token_id: int | None) -> str:
    if token_id is None:
        return ""
    return decode_bytes(encoding, [token_id]).decode("utf-8", errors="replace")
