"""Counting a prompt's tokens for a model however the client can: one chain, used by token
budgets, rate limits and ``client.count_tokens``.

In order of preference: the model's own tokenizer (exported by the server, or registered
with ``client.register_tokenizer``: exact, no round trip); the server's own tokenize
endpoints (``dialects``: vLLM's ``/tokenize``, llama.cpp's ``/apply-template`` +
``/tokenize``; exact, a round trip per count) when the local count is not exact — no
tokenizer held, or a chat whose prompt depends on the server (``Tokenizer.exact_for``); the
hosted-model encoding or an estimate (``exact=False``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sdk._protocol.actions import Flow
from sdk._protocol.options import ClientConfig

from .dialects import server_count_flow
from .registry import TokenizerRegistry
from .remote import tokenizer_flow

if TYPE_CHECKING:
    from sdk.tokens.budget import CountRequest, TokenBudget
    from sdk.tokens.tokenizer import Tokenizer, TokenizerSource

__all__ = ["Counter", "TokenCount", "count_flow", "counter_flow"]


@dataclass(frozen=True)
class TokenCount:
    """How many tokens a prompt is for a model, and how the count was made.

    >>> client.count_tokens("smollm2-135m-instruct", messages=[...])  # doctest: +SKIP
    TokenCount(tokens=10, exact=True, source='server', context_length=8192)

    ``source``: ``"server"`` (the model's exported tokenizer), ``"gguf"`` (one read from a
    model file and registered), ``"tokenize"`` (the server's own tokenize endpoints),
    ``"hosted"`` (a hosted model's public encoding) or ``"estimate"``.
    """

    tokens: int
    exact: bool
    source: TokenizerSource | str
    context_length: int | None


@dataclass
class Counter:
    """Counts for one model: local, or the server's own when the local count is not exact."""

    config: ClientConfig
    registry: TokenizerRegistry
    model: str
    tokenizer: Tokenizer
    exact: bool
    server_context: int | None = None
    used_tokenize: bool = False
    # a chat's tools, tool_choice and parallel_tool_calls: part of every chat prompt counted
    chat_options: Mapping[str, Any] = field(default_factory=dict)

    def count(self, request: CountRequest) -> Flow[int]:
        local_exact = self.tokenizer.exact_for(
            None if isinstance(request, str) else request, **self.chat_options
        )
        # a hosted API has no tokenize endpoint: asking would cost a request for nothing
        if not local_exact and self.tokenizer.source != "hosted":
            remote = yield from server_count_flow(
                self.config, self.registry, self.model, request, self.chat_options
            )
            if remote is not None:
                self.exact = self.used_tokenize = True
                count, context = remote
                self.server_context = self.server_context or context
                return count
        self.exact = local_exact
        if isinstance(request, str):
            return self.tokenizer.count(request)
        return self.tokenizer.count_chat(request, **self.chat_options)

    def context_length(self, budget: TokenBudget | None = None) -> int | None:
        explicit = budget.context_length if budget is not None else None
        return explicit or self.tokenizer.context_length or self.server_context


CHAT_OPTIONS = ("tools", "tool_choice", "parallel_tool_calls")


def counter_flow(
    config: ClientConfig,
    registry: TokenizerRegistry,
    model: str,
    body: Mapping[str, Any] | None = None,
) -> Flow[Counter]:
    """A ``Counter`` for ``model`` (its tokenizer fetched once per client); ``body``: the
    chat request whose tools belong to every count."""
    tokenizer = yield from tokenizer_flow(config, registry, model)
    options = {k: body[k] for k in CHAT_OPTIONS if body and body.get(k) is not None}
    return Counter(config, registry, model, tokenizer, tokenizer.exact, chat_options=options)


def count_flow(
    config: ClientConfig,
    registry: TokenizerRegistry,
    model: str,
    request: list[dict[str, Any]] | str,
    chat_options: Mapping[str, Any] | None = None,
) -> Flow[TokenCount]:
    """Count ``request`` (chat messages, or a completion prompt) for ``model``; a chat with
    ``chat_options`` (its tools, tool_choice, parallel_tool_calls)."""
    counter = yield from counter_flow(config, registry, model, chat_options)
    tokens = yield from counter.count(request)
    source = "tokenize" if counter.used_tokenize else counter.tokenizer.source
    return TokenCount(tokens, counter.exact, source, counter.context_length())
