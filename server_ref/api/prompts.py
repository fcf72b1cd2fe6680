"""Chat messages -> prompt token ids, the same way for every route that renders a chat."""

from __future__ import annotations

from collections.abc import Sequence

import jinja2

from sdk.types import ChatMessage
from server_ref.api.errors import BadRequestError
from server_ref.engine.types import PromptTokenizer


def render_chat(
    tokenizer: PromptTokenizer,
    messages: Sequence[ChatMessage],
    *,
    tools: Sequence[object] | None = None,
    tool_choice: object = None,
    parallel_tool_calls: bool | None = None,
    add_generation_prompt: bool = True,
) -> list[int]:
    """Chat template (with the tools, ``sdk.tokens.render_chat``), then tokens: the ids a
    client's ``count_chat`` counts. Special-token text in the template is parsed as such."""
    try:
        text = tokenizer.render_chat(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            add_generation_prompt=add_generation_prompt,
        )
    except (ValueError, jinja2.TemplateError) as exc:
        # The template refused these messages (e.g. roles that do not alternate).
        raise BadRequestError(f"Chat template error: {exc}", param="messages") from None
    return tokenizer.encode(text, allow_special=True)
