"""Errors raised while building tokenizers and rendering chat templates.

    ValueError
     └── TokenizerError        bad vocabulary, pattern, rank file or token id
          └── ChatTemplateError a chat template failed to compile or render

Both derive from ``ValueError`` because they always describe bad *input* (a broken GGUF, a
template that calls ``raise_exception``), never a bug in this library; the server maps them to
a 400 response and the CLI to one readable line.
"""

from __future__ import annotations

__all__ = ["ChatTemplateError", "TokenizerError"]


class TokenizerError(ValueError):
    """A vocabulary, pre-tokenizer pattern, rank file or token id could not be used."""


class ChatTemplateError(TokenizerError):
    """A chat template has a syntax error, misused a value, or raised an error itself."""
