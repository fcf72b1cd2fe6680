"""Local tokenization: exact tiktoken encodings and sandboxed chat-template rendering.

The server (``server_ref``) builds its encoder and renders prompts with these same functions,
which is what makes token counts computed here match the server's.
"""

from __future__ import annotations

from sdk.tokens.chat_template import render_chat_template
from sdk.tokens.encoding import (
    PRE_TOKENIZER_PATTERNS,
    build_encoding,
    decode_bytes,
    dump_ranks,
    encode_text,
    parse_ranks,
    pattern_for_pre_tokenizer,
    ranks_sha256,
    vocab_size,
)
from sdk.tokens.errors import ChatTemplateError, TokenizerError

__all__ = [
    "PRE_TOKENIZER_PATTERNS",
    "ChatTemplateError",
    "TokenizerError",
    "build_encoding",
    "decode_bytes",
    "dump_ranks",
    "encode_text",
    "parse_ranks",
    "pattern_for_pre_tokenizer",
    "ranks_sha256",
    "render_chat_template",
    "vocab_size",
]
