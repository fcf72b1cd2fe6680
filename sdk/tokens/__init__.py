"""Local tokenization: exact token counts, token budgets, rate limits and text chunking.

* ``encoding`` / ``chat_template`` — build a tiktoken encoding from a model's vocabulary and
  render its chat template in a sandbox. The server (``server_ref``) uses these same
  functions, which is what makes counts computed here equal the server's.
* ``chat_render`` — ``render_chat``: a chat request (messages, tools, tool_choice) as prompt
  text, with the model's own tool support or ``tool_format``'s generic JSON format (whose
  reply schema and parser live there too).
* ``export`` / ``remote`` — the server's tokenizer export, fetched once per model and cached
  on disk under its sha256 (``client.tokenizer(model)``); ``hosted`` — public encodings for
  hosted model names; estimates, flagged ``exact=False``, for servers that export nothing.
* ``budget`` / ``trim`` — ``TokenBudget``: check (and trim) a call before it is sent;
  ``ratelimit`` — ``RateLimiter``: requests and tokens per minute; ``guard`` — the flow that
  puts both in front of the clients' chat and completion calls (only when configured).
* ``chunking`` — ``chunk_text``: split text on token boundaries.

Names are imported lazily: ``import sdk.tokens`` does not load tiktoken or jinja2.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sdk.tokens.budget import BudgetPlan, TokenBudget, TrimPolicy, fit_messages, fit_prompt
    from sdk.tokens.cache import RankCache
    from sdk.tokens.chat_render import render_chat, template_uses_tools
    from sdk.tokens.chat_template import render_chat_template, template_variables
    from sdk.tokens.chunking import chunk_text
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
    from sdk.tokens.export import export_tokenizer, tokenizer_from_export
    from sdk.tokens.hosted import TokenCountWarning, estimate_tokenizer, hosted_tokenizer
    from sdk.tokens.messages import template_messages
    from sdk.tokens.ratelimit import RateLimiter
    from sdk.tokens.tokenizer import (
        ByteEstimateTokenizer,
        ModelTokenizer,
        OpenAITokenizer,
        Tokenizer,
    )
    from sdk.tokens.tool_format import (
        ToolCallText,
        ToolReply,
        ToolSpec,
        active_tools,
        generic_tool_messages,
        parse_tool_reply,
        tool_reply_schema,
        tool_system_prompt,
    )

__all__ = [
    "PRE_TOKENIZER_PATTERNS",
    "BudgetPlan",
    "ByteEstimateTokenizer",
    "ChatTemplateError",
    "ModelTokenizer",
    "OpenAITokenizer",
    "RankCache",
    "RateLimiter",
    "TokenBudget",
    "TokenCountWarning",
    "Tokenizer",
    "TokenizerError",
    "ToolCallText",
    "ToolReply",
    "ToolSpec",
    "TrimPolicy",
    "active_tools",
    "build_encoding",
    "chunk_text",
    "decode_bytes",
    "dump_ranks",
    "encode_text",
    "estimate_tokenizer",
    "export_tokenizer",
    "fit_messages",
    "fit_prompt",
    "generic_tool_messages",
    "hosted_tokenizer",
    "parse_ranks",
    "parse_tool_reply",
    "pattern_for_pre_tokenizer",
    "ranks_sha256",
    "render_chat",
    "render_chat_template",
    "template_messages",
    "template_uses_tools",
    "template_variables",
    "tokenizer_from_export",
    "tool_reply_schema",
    "tool_system_prompt",
    "vocab_size",
]

_LAZY = {
    **dict.fromkeys(
        ["BudgetPlan", "TokenBudget", "TrimPolicy", "fit_messages", "fit_prompt"], "budget"
    ),
    "RankCache": "cache",
    **dict.fromkeys(["render_chat_template", "template_variables"], "chat_template"),
    **dict.fromkeys(["render_chat", "template_uses_tools"], "chat_render"),
    **dict.fromkeys(
        [
            "ToolCallText",
            "ToolReply",
            "ToolSpec",
            "active_tools",
            "generic_tool_messages",
            "parse_tool_reply",
            "tool_reply_schema",
            "tool_system_prompt",
        ],
        "tool_format",
    ),
    "chunk_text": "chunking",
    **dict.fromkeys(
        [
            "PRE_TOKENIZER_PATTERNS",
            "build_encoding",
            "decode_bytes",
            "dump_ranks",
            "encode_text",
            "parse_ranks",
            "pattern_for_pre_tokenizer",
            "ranks_sha256",
            "vocab_size",
        ],
        "encoding",
    ),
    **dict.fromkeys(["ChatTemplateError", "TokenizerError"], "errors"),
    **dict.fromkeys(["export_tokenizer", "tokenizer_from_export"], "export"),
    **dict.fromkeys(["TokenCountWarning", "estimate_tokenizer", "hosted_tokenizer"], "hosted"),
    "template_messages": "messages",
    "RateLimiter": "ratelimit",
    **dict.fromkeys(
        ["ByteEstimateTokenizer", "ModelTokenizer", "OpenAITokenizer", "Tokenizer"], "tokenizer"
    ),
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'sdk.tokens' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
