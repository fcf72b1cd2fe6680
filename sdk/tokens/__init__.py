"""Local tokenization: exact token counts, token budgets and text chunking.

* ``encoding`` / ``chat_template`` — build a tiktoken encoding from a model's vocabulary and
  render its chat template in a sandbox. The server (``server_ref``) uses these same
  functions, which is what makes counts computed here equal the server's.
* ``chat_render`` — ``render_chat``: a chat request (messages, tools, tool_choice) as prompt
  text, with the model's own tool support or ``tool_format``'s generic JSON format (whose
  reply schema lives there too; ``tool_reply`` reads replies back, whole or streamed;
  ``schema_rewrite`` closes strict schemas and embeds one schema in another).
* ``tokenizer`` — ``Tokenizer`` and the exact ``ModelTokenizer``; ``gguf_vocab`` —
  ``tokenizer_from_gguf``: a model file's exact tokenizer (the ``gguf`` extra).
* ``export`` / ``cache`` — the server's tokenizer export (``client.tokenizer(model)``
  rebuilds it), and rank files cached on disk under their sha256; ``hf`` — models exported
  as a ``tokenizer.json`` (embedding models), read with the optional ``tokenizers`` package;
  ``hosted`` / ``estimates`` — public encodings for hosted model names; estimates, flagged
  ``exact=False``, for servers that export nothing.
* ``budget`` / ``trim`` — ``TokenBudget``: plan (check, trim) a call against a context window.
* ``chunking`` — ``chunk_text``: split text on token boundaries.

This package is a pure library: no HTTP, no client. What puts it in front of a client's
calls (fetching tokenizers, enforcing budgets, rate limits) is ``sdk._policies``.

Names are imported lazily: ``import sdk.tokens`` does not load tiktoken or jinja2. The
``TYPE_CHECKING`` block below is the one list of exports (``sdk._lazy`` reads it; ``X as X``
is how a type checker is told a name is re-exported).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdk._lazy import lazy_exports

if TYPE_CHECKING:
    from sdk.tokens.budget import (
        BudgetPlan as BudgetPlan,
        TokenBudget as TokenBudget,
        TrimPolicy as TrimPolicy,
        fit_messages as fit_messages,
        fit_prompt as fit_prompt,
    )
    from sdk.tokens.cache import RankCache as RankCache
    from sdk.tokens.chat_render import (
        render_chat as render_chat,
        template_uses_tools as template_uses_tools,
    )
    from sdk.tokens.chat_template import (
        render_chat_template as render_chat_template,
        template_variables as template_variables,
    )
    from sdk.tokens.chunking import chunk_text as chunk_text
    from sdk.tokens.encoding import (
        PRE_TOKENIZER_PATTERNS as PRE_TOKENIZER_PATTERNS,
        build_encoding as build_encoding,
        decode_bytes as decode_bytes,
        dump_ranks as dump_ranks,
        encode_text as encode_text,
        parse_ranks as parse_ranks,
        pattern_for_pre_tokenizer as pattern_for_pre_tokenizer,
        ranks_sha256 as ranks_sha256,
        vocab_size as vocab_size,
    )
    from sdk.tokens.errors import (
        ChatTemplateError as ChatTemplateError,
        TokenizerError as TokenizerError,
    )
    from sdk.tokens.estimates import (
        ByteEstimateTokenizer as ByteEstimateTokenizer,
        OpenAITokenizer as OpenAITokenizer,
    )
    from sdk.tokens.export import (
        export_hf_tokenizer as export_hf_tokenizer,
        export_tokenizer as export_tokenizer,
        tokenizer_from_export as tokenizer_from_export,
    )
    from sdk.tokens.gguf_vocab import tokenizer_from_gguf as tokenizer_from_gguf
    from sdk.tokens.hf import HFTokenizer as HFTokenizer
    from sdk.tokens.hosted import (
        TokenCountWarning as TokenCountWarning,
        estimate_tokenizer as estimate_tokenizer,
        hosted_tokenizer as hosted_tokenizer,
    )
    from sdk.tokens.messages import template_messages as template_messages
    from sdk.tokens.schema_rewrite import (
        close_objects as close_objects,
        embed_schema as embed_schema,
    )
    from sdk.tokens.tokenizer import (
        ModelTokenizer as ModelTokenizer,
        Tokenizer as Tokenizer,
    )
    from sdk.tokens.tool_format import (
        ToolSpec as ToolSpec,
        active_tools as active_tools,
        generic_tool_messages as generic_tool_messages,
        native_tool_messages as native_tool_messages,
        reply_format_instructions as reply_format_instructions,
        tool_reply_schema as tool_reply_schema,
        tool_system_prompt as tool_system_prompt,
    )
    from sdk.tokens.tool_reply import (
        ArgumentsDelta as ArgumentsDelta,
        ContentDelta as ContentDelta,
        ToolCallStart as ToolCallStart,
        ToolCallText as ToolCallText,
        ToolReply as ToolReply,
        ToolReplyDecoder as ToolReplyDecoder,
        ToolReplyEvent as ToolReplyEvent,
        parse_tool_reply as parse_tool_reply,
    )


__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
