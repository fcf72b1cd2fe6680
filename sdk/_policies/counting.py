"""Counting a prompt's tokens for a model however the client can: one chain, used by token
budgets, rate limits and ``client.count_tokens``.

In order of preference: the model's own tokenizer (exported by the server, exact); for a
server without the export, its ``/tokenize`` (exact, one round trip per count); the
hosted-model encoding or an estimate (``exact=False``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sdk._protocol.actions import Flow
from sdk._protocol.options import ClientConfig

from .registry import TokenizerRegistry
from .remote import remote_count_flow, tokenizer_flow

if TYPE_CHECKING:
    from sdk.tokens.budget import CountRequest, TokenBudget
    from sdk.tokens.tokenizer import Tokenizer, TokenizerSource

__all__ = ["Counter", "TokenCount", "count_flow", "counter_flow"]


@dataclass(frozen=True)
class TokenCount:
    """How many tokens a prompt is for a model, and how the count was made.

    >>> client.count_tokens("smollm2-135m-instruct", messages=[...])  # doctest: +SKIP
    TokenCount(tokens=10, exact=True, source='server', context_length=8192)

    ``source``: ``"server"`` (the model's exported tokenizer), ``"tokenize"`` (the server's
    ``/tokenize``), ``"hosted"`` (a hosted model's public encoding) or ``"estimate"``.
    """

    tokens: int
    exact: bool
    source: TokenizerSource | str
    context_length: int | None


@dataclass
class Counter:
    """Counts for one model: local, or the server's /tokenize when local is an estimate."""

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
        if self.tokenizer.source == "estimate":
            remote = yield from remote_count_flow(
                self.config, self.registry, self.model, request, self.chat_options
            )
            if remote is not None:
                self.exact = self.used_tokenize = True
                count, context = remote
                self.server_context = self.server_context or context
                return count
            self.exact = False
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
) -> Flow[TokenCount]:
    """Count ``request`` (chat messages, or a completion prompt) for ``model``."""
    counter = yield from counter_flow(config, registry, model)
    tokens = yield from counter.count(request)
    source = "tokenize" if counter.used_tokenize else counter.tokenizer.source
    return TokenCount(tokens, counter.exact, source, counter.context_length())
