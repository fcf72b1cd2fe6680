"""Chat messages -> prompt token ids, the same way for every route that renders a chat."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jinja2

from sdk.tokens import template_messages
from sdk.types import ChatMessage
from server_ref.api.errors import BadRequestError
from server_ref.engine.types import PromptTokenizer


def message_dicts(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Messages as the chat template expects them: text parts joined, ``None`` -> ``""``.

    The SDK counts tokens from the same function, so its counts match ``usage``.
    """
    return template_messages(messages)


def render_chat(
    tokenizer: PromptTokenizer,
    messages: Sequence[ChatMessage],
    *,
    add_generation_prompt: bool = True,
) -> list[int]:
    """Chat template, then tokens (special-token text in the template is parsed as such)."""
    try:
        text = tokenizer.apply_chat_template(
            message_dicts(messages), add_generation_prompt=add_generation_prompt
        )
    except (ValueError, jinja2.TemplateError) as exc:
        # The template refused these messages (e.g. roles that do not alternate).
        raise BadRequestError(f"Chat template error: {exc}", param="messages") from None
    return tokenizer.encode(text, allow_special=True)
