"""Errors raised while building tokenizers and rendering chat templates.

    SDKError, ValueError
     └── TokenizerError        bad vocabulary, pattern, rank file, sha256 or token id
          └── ChatTemplateError a chat template failed to compile or render

Both derive from ``ValueError`` because they always describe bad *input* (a broken GGUF, a
template that calls ``raise_exception``, a downloaded rank file whose sha256 does not match),
never a bug in this library; the server maps them to a 400 response and the CLI to one
readable line. They also derive from ``sdk.SDKError``, so a caller who catches every SDK
error catches these too.
"""

from __future__ import annotations

from sdk._exceptions import SDKError

__all__ = ["ChatTemplateError", "TokenizerError"]


class TokenizerError(SDKError, ValueError):
    """A vocabulary, pre-tokenizer pattern, rank file or token id could not be used."""


class ChatTemplateError(TokenizerError):
    """A chat template has a syntax error, misused a value, or raised an error itself."""
