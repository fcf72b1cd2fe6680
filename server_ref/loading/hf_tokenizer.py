"""A ``tokenizer.json`` read as it is by the ``tokenizers`` library (WordPiece for BERT models).

The file is read by ``sdk.tokens.hf.load_tokenizer_json``, the code a client's exported
copy is read with (``GET /v1/models/{id}/tokenizer``, format ``"hf-tokenizers"``), so both
ends count the same tokens.

The file describes the whole pipeline (BERT's normaliser: lower-casing, accent stripping,
spaces around CJK characters; the pre-tokeniser; WordPiece; the ``[CLS] ... [SEP]``
template), so nothing of it is re-implemented here. Two settings in the file are ignored on
purpose: all-MiniLM-L6-v2's ``tokenizer.json`` pads every input to a fixed 128 tokens and
truncates at 128 (leftovers of its training setup, which sentence-transformers overrides with
its own ``max_seq_length`` of 256). Padding is the batcher's business, and truncation is
done here at ``max_tokens`` the way the library does it: the text's tokens are cut so that
they and the template's special tokens fit, then the template is applied.

    >>> tok = HFTokenizer.from_file(folder / "tokenizer.json", max_tokens=256)  # doctest: +SKIP
    >>> tok.encode_batch(["Hello world"])[0]  # doctest: +SKIP
    Encoded(ids=[101, 7592, 2088, 102], n_tokens=4)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from sdk.tokens.errors import TokenizerError
from sdk.tokens.hf import load_tokenizer_json
from server_ref.loading.bert_weights import ModelFilesError

__all__ = ["Encoded", "HFTokenizer"]


@dataclass(frozen=True)
class Encoded:
    """One text, tokenized for the model.

    ``ids``: what the model runs, special tokens included, at most ``max_tokens``.
    ``n_tokens``: the whole text's token count, special tokens included, before truncation.
    """

    ids: list[int]
    n_tokens: int

    @property
    def truncated(self) -> bool:
        return self.n_tokens > len(self.ids)


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` with the model's token limit; keeps the file's bytes too
    (``source``), so the server can hand clients the exact tokenizer."""

    def __init__(self, tokenizer: Tokenizer, source: bytes, max_tokens: int) -> None:
        tokenizer.no_padding()  # load_tokenizer_json did; a Tokenizer passed in may not have
        tokenizer.no_truncation()
        self._tok = tokenizer
        self.source = source
        self.sha256 = hashlib.sha256(source).hexdigest()
        self.max_tokens = max_tokens
        self.n_special = tokenizer.num_special_tokens_to_add(is_pair=False)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        if max_tokens <= self.n_special:
            raise ValueError(f"max_tokens {max_tokens} leaves no room beside the special tokens")

    @classmethod
    def from_file(cls, path: Path, max_tokens: int) -> HFTokenizer:
        """Read ``path`` (a ``tokenizer.json``); ``ModelFilesError`` if it is missing or bad."""
        try:
            source = Path(path).read_bytes()
        except FileNotFoundError:
            raise ModelFilesError(f"{Path(path).name} is missing from the model folder") from None
        try:
            tokenizer = load_tokenizer_json(source)
        except TokenizerError as exc:
            raise ModelFilesError(f"{Path(path).name}: {exc}") from exc
        return cls(tokenizer, source, max_tokens)

    @property
    def special_tokens(self) -> dict[str, int]:
        """The special tokens' text and ids (``{"[CLS]": 101, ...}``), for the export."""
        added = self._tok.get_added_tokens_decoder()
        return {token.content: i for i, token in sorted(added.items()) if token.special}

    def encode_batch(self, texts: Sequence[str]) -> list[Encoded]:
        """Tokenize ``texts`` (in parallel, in the library), each truncated to ``max_tokens``."""
        room = self.max_tokens - self.n_special
        out = []
        for enc in self._tok.encode_batch(list(texts), add_special_tokens=False):
            n_tokens = len(enc.ids) + self.n_special
            if n_tokens > self.max_tokens:
                enc.truncate(room)  # in place; cuts the text's tokens, as the library does
            ids = self._tok.post_process(enc, None, add_special_tokens=True).ids
            out.append(Encoded(ids, n_tokens))
        return out

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """The whole text's ids, not truncated; special tokens included unless asked not to."""
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def count(self, text: str) -> int:
        """Tokens of ``text`` as the model would see it untruncated ([CLS] and [SEP] count)."""
        return len(self._tok.encode(text, add_special_tokens=False).ids) + self.n_special

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens left out (``[CLS] hello [SEP]`` -> ``hello``)."""
        return self._tok.decode(list(ids), skip_special_tokens=True)
