"""A chat request as prompt text: the one function the server renders with and
``count_chat`` counts with, so a count taken here equals the server's ``prompt_tokens``.

``render_chat(template, messages, tools=..., tool_choice=...)``:

* a template that reads ``tools`` (Llama 3.1, Qwen 2.5, Hermes, ...) gets the function tools
  as ``tools`` and the messages in Hugging Face's tool convention (``tool_calls`` with object
  arguments, ``tool_call_id``), and renders them its own way; the system message says to
  reply in the generic JSON format, which is what the server constrains the reply to (it
  has no parser for each model family's own call syntax);
* any other template (the default model's ChatML) gets the generic format of
  ``sdk.tokens.tool_format``: a ``# Tools`` system section, tool calls shown as the JSON the
  model writes, tool results as a user message.

Without tools and tool turns both give exactly ``render_chat_template(template,
template_messages(messages))``. ``tool_choice="none"`` renders no tool definitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sdk.tokens.chat_template import render_chat_template, template_variables
from sdk.tokens.tool_format import active_tools, generic_tool_messages, native_tool_messages

__all__ = ["render_chat", "template_uses_tools"]


def template_uses_tools(template: str) -> bool:
    """Whether a chat template renders tool definitions itself (it reads ``tools``)."""
    return "tools" in template_variables(template)


def render_chat(
    template: str,
    messages: Sequence[object],
    *,
    tools: Sequence[object] | None = None,
    tool_choice: object = None,
    parallel_tool_calls: bool | None = None,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    **extra: Any,
) -> str:
    """The prompt for a chat request (messages, tools and tool choice as the request has them:
    dicts or ``sdk.types`` models).

    >>> chatml = (
    ...     "{% for m in messages %}<|im_start|>{{ m['role'] }}\\n{{ m['content'] }}<|im_end|>\\n"
    ...     "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}"
    ... )
    >>> tool = {"type": "function", "function": {"name": "now", "parameters": {}}}
    >>> print(render_chat(chatml, [{"role": "user", "content": "Time?"}], tools=[tool]))
    ... # doctest: +ELLIPSIS
    <|im_start|>system
    # Tools
    ...
    """
    spec = active_tools(tools, tool_choice, parallel_tool_calls)
    if template_uses_tools(template):
        if spec is not None:
            extra["tools"] = [{"type": "function", "function": tool} for tool in spec.tools]
        chat = native_tool_messages(messages, spec)
    else:
        chat = generic_tool_messages(messages, spec)
    return render_chat_template(
        template,
        chat,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos_token,
        eos_token=eos_token,
        **extra,
    )
