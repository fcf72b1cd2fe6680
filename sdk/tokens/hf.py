"""Tokenizers described by a ``tokenizer.json``, read by Hugging Face's ``tokenizers`` library.

Embedding models such as all-MiniLM-L6-v2 tokenize with WordPiece, which tiktoken cannot
express; their ``tokenizer.json`` describes the whole pipeline (normaliser, pre-tokeniser,
model, the ``[CLS] ... [SEP]`` template), and the ``tokenizers`` library runs it as it is.
The server exports the file's bytes (export format ``"hf-tokenizers"``) and reads them with
``load_tokenizer_json`` too, so a client's count is the server's.

``tokenizers`` is an optional dependency of the SDK: ``pip install 'llm-sdk[hf]'``. Without
it, a client falls back to the server's ``/tokenize`` for exact counts.

    >>> data = Path("tokenizer.json").read_bytes()  # doctest: +SKIP
    >>> tok = HFTokenizer.from_json(data, model="all-minilm-l6-v2")  # doctest: +SKIP
    >>> tok.encode("Hello world")  # doctest: +SKIP
    [101, 7592, 2088, 102]
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sdk.tokens.errors import TokenizerError
from sdk.tokens.tokenizer import Tokenizer, TokenizerSource

if TYPE_CHECKING:
    import tokenizers

__all__ = ["HF_EXTRA", "HFTokenizer", "hf_available", "load_tokenizer_json"]

HF_EXTRA = "llm-sdk[hf]"


def hf_available() -> bool:
    """Whether the ``tokenizers`` library can be imported (without importing it)."""
    return importlib.util.find_spec("tokenizers") is not None


def load_tokenizer_json(data: bytes | str) -> tokenizers.Tokenizer:
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json``'s contents, padding and truncation
    off (a file may carry its training setup's: all-MiniLM-L6-v2's pads and cuts at 128,
    where the model takes 256). ``TokenizerError`` for a file the library cannot read or a
    missing library (naming the extra to install)."""
    try:
        from tokenizers import Tokenizer as Library
    except ImportError:
        raise TokenizerError(
            f"reading a tokenizer.json needs the tokenizers package: pip install '{HF_EXTRA}'"
        ) from None
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        tokenizer = Library.from_str(text)
    except Exception as exc:  # bad UTF-8, or the bare Exceptions the library raises
        raise TokenizerError(f"tokenizer.json cannot be read: {exc}") from None
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


class HFTokenizer(Tokenizer):
    """The exact tokenizer of a model described by a ``tokenizer.json`` (``exact=True``).

    ``encode`` and ``count`` include the special tokens the model's template adds
    (``[CLS]`` and ``[SEP]`` for BERT), as the server's ``/tokenize`` and ``usage`` count
    them. Special-token text in the input (``"[SEP]"``) is always read as the special token:
    that is what the library, and so the model, does. Such models have no chat template:
    ``count_chat`` raises ``TokenizerError``.
    """

    source: TokenizerSource = "server"

    def __init__(
        self, *, model: str, tokenizer: tokenizers.Tokenizer, context_length: int | None = None
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.context_length = context_length

    @classmethod
    def from_json(
        cls, data: bytes | str, *, model: str, context_length: int | None = None
    ) -> HFTokenizer:
        """From a ``tokenizer.json``'s contents (see ``load_tokenizer_json``)."""
        return cls(model=model, tokenizer=load_tokenizer_json(data), context_length=context_length)

    @property
    def special_tokens(self) -> dict[str, int]:
        """The special tokens' text and ids (``{"[CLS]": 101, ...}``)."""
        added = self.tokenizer.get_added_tokens_decoder()
        return {token.content: i for i, token in sorted(added.items()) if token.special}

    @property
    def n_vocab(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=True).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` for many texts at once (the library spreads them over its threads)."""
        return [list(e.ids) for e in self.tokenizer.encode_batch(list(texts))]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        ids = list(ids)
        n_vocab = self.n_vocab
        bad = next((t for t in ids if not 0 <= t < n_vocab), None)
        if bad is not None:
            raise TokenizerError(f"token id {bad} is outside the vocabulary [0, {n_vocab})")
        return self.tokenizer.decode(ids, skip_special_tokens=False).encode("utf-8")

    def count_chat(
        self,
        messages: Sequence[object],
        *,
        tools: Sequence[object] | None = None,
        tool_choice: object = None,
        parallel_tool_calls: bool | None = None,
    ) -> int:
        raise TokenizerError(
            f"{self.model!r} has no chat template (it is an embedding model): count its "
            "inputs with count(text)"
        )
