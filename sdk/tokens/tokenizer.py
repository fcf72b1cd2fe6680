"""``Tokenizer``: count, encode and decode on the client, exactly or flagged as an estimate.

One interface (``source`` says where a tokenizer came from, ``exact`` whether its counts are
the server's):

* ``ModelTokenizer`` (exact): a model's own byte-level BPE vocabulary and chat template, built
  with ``build_encoding`` / ``render_chat`` — the code the reference server runs. It comes
  from a server's tokenizer export (``client.tokenizer(model)``, ``source="server"``) or from
  a GGUF file (``tokenizer_from_gguf``, ``source="gguf"``); ``server_ref`` serves its models
  with this same type.
* ``sdk.tokens.estimates``: ``OpenAITokenizer`` (a public encoding: hosted models, and the
  estimate for servers that export nothing) and ``ByteEstimateTokenizer`` (about four bytes
  per token), both ``exact=False``.

What a chat prompt *is* can depend on the server, not only on the model: a template without
tool support gets tools in the server's own words, and llama.cpp continues a chat that ends
with the assistant's turn where others open a new one. ``exact_for(messages, tools=...)``
says whether a count of that request is the server's; for a tokenizer read from a GGUF file
(which does not know the server that will run it) such chats are estimates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from sdk.tokens.errors import ChatTemplateError

if TYPE_CHECKING:
    import tiktoken

__all__ = ["ModelTokenizer", "Tokenizer", "TokenizerSource"]

# "server": the server's own export; "gguf": read from a model file; "hosted": a hosted
# model's public encoding; "estimate": no tokenizer known
TokenizerSource = Literal["server", "gguf", "hosted", "estimate"]
_EXACT_SOURCES = frozenset({"server", "gguf"})


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
        return self.source in _EXACT_SOURCES

    def exact_for(
        self,
        messages: Sequence[object] | None = None,
        *,
        tools: Sequence[object] | None = None,
        tool_choice: object = None,
        parallel_tool_calls: bool | None = None,
    ) -> bool:
        """Whether ``count_chat`` of this request (``count`` when ``messages`` is ``None``)
        equals the server's count; ``exact`` unless the chat depends on the server."""
        return self.exact

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
    """A model's own byte-level BPE tokenizer and chat template (exact counts).

    >>> tok = sdk.tokens.tokenizer_from_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
    >>> tok.encode("<|im_start|>user"), tok.count_chat([{"role": "user", "content": "Hi"}])
    ... # doctest: +SKIP
    ([1, 4093], 22)

    ``pattern``, ``mergeable_ranks`` and ``special_tokens`` build the encoding
    (``sdk.tokens.build_encoding``); ids ``>= n_vocab`` are placeholders for bytes the
    vocabulary lacks and are dropped. ``user_defined_tokens`` are matched even when special
    tokens are not. ``add_bos`` / ``add_eos``: the server adds BOS / EOS ids around every
    prompt, as llama.cpp does when the GGUF asks for it (a server's export leaves them off:
    chat templates write BOS text themselves).
    """

    def __init__(
        self,
        *,
        model: str,
        pattern: str,
        mergeable_ranks: Mapping[bytes, int],
        special_tokens: Mapping[str, int],
        n_vocab: int,
        user_defined_tokens: Iterable[str] = (),
        chat_template: str | None = None,
        bos_token: str = "",
        eos_token: str = "",
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        add_bos: bool = False,
        add_eos: bool = False,
        context_length: int | None = None,
        pre_tokenizer: str | None = None,
        source: TokenizerSource = "server",
    ) -> None:
        from sdk.tokens.encoding import build_encoding
        from sdk.tokens.errors import TokenizerError

        self.model = model
        self.source = source
        self.pattern = pattern
        self.mergeable_ranks = dict(mergeable_ranks)
        self.special_tokens = dict(special_tokens)
        self.user_defined_tokens = frozenset(user_defined_tokens)
        unknown = self.user_defined_tokens - self.special_tokens.keys()
        if unknown:
            raise TokenizerError(
                f"user-defined tokens {sorted(unknown)[:5]} are not special tokens"
            )
        self.encoding: tiktoken.Encoding = build_encoding(
            f"{source}-{model}", pattern, self.mergeable_ranks, self.special_tokens
        )
        self.n_vocab = n_vocab
        self.chat_template = chat_template
        self.bos_token, self.eos_token = bos_token, eos_token
        self.bos_token_id, self.eos_token_id = bos_token_id, eos_token_id
        self.add_bos = add_bos and bos_token_id is not None
        self.add_eos = add_eos and eos_token_id is not None
        self.context_length = context_length
        self.pre_tokenizer = pre_tokenizer

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        from sdk.tokens.encoding import encode_text

        allowed: frozenset[str] | Literal["all"] = (
            "all" if allow_special else self.user_defined_tokens
        )
        return encode_text(self.encoding, text, allowed_special=allowed, n_vocab=self.n_vocab)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        from sdk.tokens.encoding import decode_bytes

        return decode_bytes(self.encoding, ids, n_vocab=self.n_vocab)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (possibly part of a UTF-8 character)."""
        return self.decode_bytes([token_id])

    def prompt_ids(self, text: str, *, allow_special: bool = True) -> list[int]:
        """The ids a server runs for prompt ``text``: ``encode`` with BOS / EOS added when
        the model asks for them (``add_bos`` / ``add_eos``)."""
        ids = self.encode(text, allow_special=allow_special)
        if self.add_bos:
            assert self.bos_token_id is not None  # __init__
            ids.insert(0, self.bos_token_id)
        if self.add_eos:
            assert self.eos_token_id is not None
            ids.append(self.eos_token_id)
        return ids

    def count(self, text: str, *, allow_special: bool = True) -> int:
        return len(self.prompt_ids(text, allow_special=allow_special))

    def exact_for(
        self,
        messages: Sequence[object] | None = None,
        *,
        tools: Sequence[object] | None = None,
        tool_choice: object = None,
        parallel_tool_calls: bool | None = None,
    ) -> bool:
        # A server's export comes with its own rendering; a model file's template leaves
        # tools, tool turns and a final assistant turn to whichever server runs it.
        if self.source != "gguf" or messages is None:
            return self.exact
        from sdk.tokens.tool_format import active_tools

        if active_tools(tools, tool_choice, parallel_tool_calls) is not None:
            return False
        fields = [_fields(message) for message in messages]
        if any(f.get("role") == "tool" or f.get("tool_calls") for f in fields):
            return False
        return not fields or fields[-1].get("role") != "assistant"

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

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        **extra: Any,
    ) -> str:
        """Render template-ready message dicts with the model's own chat template."""
        from sdk.tokens.chat_template import render_chat_template

        if self.chat_template is None:
            raise ChatTemplateError("this model has no chat template (tokenizer.chat_template)")
        return render_chat_template(
            self.chat_template,
            messages,
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
        # llama.cpp (common/chat.cpp) drops the BOS / EOS text a template writes when it adds
        # those ids itself, so that they are not there twice.
        if self.add_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token) :]
        if self.add_eos and self.eos_token and text.endswith(self.eos_token):
            text = text[: -len(self.eos_token)]
        return self.count(text)


def _fields(message: object) -> Mapping[str, Any]:
    if isinstance(message, Mapping):
        return message
    return {
        "role": getattr(message, "role", None),
        "tool_calls": getattr(message, "tool_calls", None),
    }
