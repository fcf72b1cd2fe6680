"""``GET /v1/models/{model}/tokenizer``: everything a client needs to rebuild a model's tokenizer.

An extension of this project (not part of OpenAI's API). The body describes a byte-level BPE
tokenizer as tiktoken sees it (a pre-tokenizer regex, mergeable ranks, special tokens) plus
what chat prompts are made of (the chat template, BOS/EOS text) and the context window.

The mergeable ranks travel in tiktoken's own file format (``base64(token) rank`` per line)
with their sha256: inline in ``ranks`` (``?ranks=inline``) or, by default, at ``ranks_url``,
a path on the same server, so a client that cached the file under its sha256 skips it.

``format`` says how to read it: ``"tiktoken-bpe"`` as above, or ``"hf-tokenizers"`` (an
embedding model's WordPiece, say): the file in the ranks' place is a ``tokenizer.json`` for
Hugging Face's ``tokenizers`` library, which holds the whole pipeline; ``pattern`` is then
empty and ``special_tokens`` / ``n_vocab`` only informational.
"""

from __future__ import annotations

from pydantic import Field

from ._base import APIObject

__all__ = ["TokenizerExport"]


class TokenizerExport(APIObject):
    """The body of ``GET /v1/models/{model}/tokenizer``."""

    object: str = "tokenizer"
    model: str
    format: str = "tiktoken-bpe"  # or "hf-tokenizers"
    pattern: str = ""  # the pre-tokenizer regex, in tiktoken's (Rust regex) syntax
    special_tokens: dict[str, int]
    # Special tokens matched even when special-token parsing is off (llama.cpp's user-defined).
    user_defined_tokens: list[str] = Field(default_factory=list)
    n_vocab: int  # ids >= n_vocab are placeholders for bytes the vocabulary lacks; never emitted
    ranks_sha256: str  # hex sha256 of the rank file's (or tokenizer.json's) bytes
    ranks: str | None = None  # the rank file itself, when asked for inline
    ranks_url: str | None = None  # else where to GET it (a path on this server, or a URL)
    chat_template: str | None = None  # Jinja2, rendered like transformers' apply_chat_template
    bos_token: str = ""
    eos_token: str = ""
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    add_bos: bool = False  # informational: chat templates write BOS text themselves
    context_length: int | None = None  # prompt + max_tokens must fit; None when unknown
    pre_tokenizer: str | None = None  # informational: the GGUF's tokenizer.ggml.pre name
