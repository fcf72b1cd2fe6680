"""Chat messages -> prompt token ids, the same way for every route that renders a chat."""

from __future__ import annotations

from collections.abc import Sequence

import jinja2

from sdk.types import ChatMessage
from server_ref.api.errors import BadRequestError
from server_ref.engine.types import PromptTokenizer

# what a text-only model cannot read
_MEDIA_PARTS = {"image_url": " (an image)", "input_audio": " (audio)", "file": " (a file)"}


def check_text_only(messages: Sequence[ChatMessage]) -> None:
    """400 for a content part this text-only model cannot read (an image, audio, a file, or
    a kind it does not know), naming the part: dropping it would answer another question."""
    for i, message in enumerate(messages):
        if not isinstance(message.content, list):
            continue
        for j, part in enumerate(message.content):
            if part.type in ("text", "refusal"):
                continue
            what = _MEDIA_PARTS.get(part.type, "")
            raise BadRequestError(
                f"messages[{i}].content[{j}]: this model accepts text only; a content part "
                f"of type '{part.type}'{what} cannot be read.",
                param=f"messages[{i}].content[{j}]",
                code="unsupported_content_type",
            )


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
    check_text_only(messages)
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
