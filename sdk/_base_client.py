"""What ``Client`` and ``AsyncClient`` share: everything but the I/O.

``BaseClient`` holds the configuration (``_protocol.options.ClientConfig``), the policies
(``_policies.Policies``: token budget, rate limiter, tokenizers fetched so far) and the
connection pool, and builds the flow for every call. The two subclasses only *drive* those
flows, one with plain calls and one with ``await`` (httpx's ``BaseClient`` split, h11's
"bring your own I/O"), so the constructor, properties, repr, ``with_options`` and the choice
of flow exist once, here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import httpx
from typing_extensions import Unpack

from ._policies.options import (
    AUTO,
    BudgetSetting,
    ClientSettings,
    HooksSetting,
    Policies,
    PolicyOptions,
    hooks_tuple,
    split_policy_options,
)
from ._protocol.options import (
    DEFAULT_TIMEOUT,
    ClientConfig,
    ClientOptions,
    RequestOptions,
    RetryPolicy,
    TimeoutTypes,
    make_config,
    update_config,
)
from ._version import __version__

# The wire models (pydantic) and the flows that use them load on the first call, not here:
# creating a client stays cheap (benchmarks/bench_sdk.py measures it).
if TYPE_CHECKING:
    from ._policies.counting import TokenCount
    from ._policies.ratelimit import RateLimiter
    from ._protocol.actions import Flow
    from ._protocol.flow import StreamStart
    from ._protocol.request import APICall
    from .tokens import Tokenizer
    from .types import APIObject

__all__ = ["USER_AGENT", "BaseClient"]

USER_AGENT = f"llm-sdk/{__version__} python/{sys.version_info.major}.{sys.version_info.minor}"

T = TypeVar("T", bound="APIObject")
R = TypeVar("R")
HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)
SleepT = TypeVar("SleepT")
CallBuilder = Callable[[Mapping[str, Any]], "tuple[APICall[T], RequestOptions]"]


class BaseClient(Generic[HttpT, TransportT, SleepT]):
    """The I/O-free half of a client (see ``Client`` for the arguments)."""

    _config: ClientConfig
    _policies: Policies
    _http: HttpT
    _owns_http: bool
    _sleep: SleepT

    def __init__(
        self,
        *,
        base_url: str | httpx.URL | None = None,
        api_key: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
        token_budget: BudgetSetting = AUTO,
        rate_limiter: RateLimiter | None = None,
        hooks: HooksSetting = None,
        http_client: HttpT | None = None,
        transport: TransportT | None = None,
        sleep: SleepT | None = None,
    ) -> None:
        options = ClientOptions(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            retry_policy=retry_policy,
            default_headers=default_headers,
        )
        if max_retries is not None:
            options["max_retries"] = max_retries
        self._config = make_config(options, os.environ, USER_AGENT)
        self._policies = Policies(token_budget, rate_limiter, hooks=hooks_tuple(hooks))
        self._init_io(http_client, transport, sleep)

    def _init_io(
        self, http_client: HttpT | None, transport: TransportT | None, sleep: SleepT | None
    ) -> None:
        if http_client is not None and transport is not None:
            raise ValueError("pass either http_client or transport, not both")
        self._owns_http = http_client is None
        self._http = self._new_http(transport) if http_client is None else http_client
        self._sleep = self._default_sleep() if sleep is None else sleep

    def _new_http(self, transport: TransportT | None) -> HttpT:
        raise NotImplementedError

    def _default_sleep(self) -> SleepT:
        raise NotImplementedError

    @property
    def base_url(self) -> httpx.URL:
        return self._config.base_url

    @property
    def max_retries(self) -> int:
        return self._config.retry.max_retries

    @property
    def timeout(self) -> httpx.Timeout:
        return self._config.timeout

    def __repr__(self) -> str:
        # Never the API key: reprs end up in logs and tracebacks.
        name, url = type(self).__name__, str(self.base_url)
        return f"{name}(base_url={url!r}, max_retries={self.max_retries})"

    def with_options(self, **changes: Unpack[ClientSettings]) -> Self:
        """A copy with some settings changed, sharing this client's connection pool, rate
        limiter and fetched tokenizers.

        >>> client.with_options(timeout=5.0, max_retries=0).models.list()  # doctest: +SKIP
        """
        copy = object.__new__(type(self))
        copy._config = update_config(self._config, changes)
        copy._policies = self._policies.updated(changes)
        copy._http, copy._owns_http, copy._sleep = self._http, False, self._sleep
        return copy

    # --- the flows the drivers run --------------------------------------------------------

    def _call_flow(self, build: CallBuilder[T], kwargs: Mapping[str, Any]) -> Flow[T]:
        rest, policy_options = split_policy_options(kwargs)
        call, options = build(rest)
        return self._observed(call, self._send_call(call, options, policy_options))

    def _stream_flow(
        self, build: CallBuilder[T], kwargs: Mapping[str, Any]
    ) -> Flow[StreamStart[T, Any]]:
        rest, policy_options = split_policy_options(kwargs)
        call, options = build(rest)
        return self._observed(call, self._send_stream(call, options, policy_options))

    def _send_call(
        self, call: APICall[T], options: RequestOptions, policy_options: PolicyOptions
    ) -> Flow[T]:
        """Where a call goes (a ``Router`` overrides this and ``_send_stream``)."""
        from ._policies.guard import guarded_call_flow

        return guarded_call_flow(self._config, self._policies, call, options, policy_options)

    def _send_stream(
        self, call: APICall[T], options: RequestOptions, policy_options: PolicyOptions
    ) -> Flow[StreamStart[T, Any]]:
        from ._policies.guard import guarded_stream_flow

        return guarded_stream_flow(self._config, self._policies, call, options, policy_options)

    def _observed(self, call: APICall[Any], flow: Flow[R]) -> Flow[R]:
        """``flow`` watched by the client's hooks, if it has any (nothing loads otherwise)."""
        if not self._policies.hooks:
            return flow
        from ._policies.hooks import CallInfo, observed_flow

        return observed_flow(flow, self._policies.hooks, CallInfo.of(call))

    def register_tokenizer(self, model: str, tokenizer: Tokenizer) -> None:
        """Count ``model``'s prompts with ``tokenizer`` from now on (no request is made).

        >>> tok = sdk.tokens.tokenizer_from_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")
        ... # doctest: +SKIP
        >>> client.register_tokenizer("smollm2-135m-instruct", tok)  # doctest: +SKIP

        ``client.tokenizer(model)`` and ``count_tokens`` then answer with it, and an exact
        one (``tokenizer.exact``) is held: the default ``token_budget="auto"`` refuses, sending
        nothing, a call whose prompt cannot fit its ``context_length``. Copies made by
        ``with_options`` share it.
        """
        from ._exceptions import InvalidRequestParamsError
        from .tokens.tokenizer import Tokenizer

        if not isinstance(model, str) or not model:
            raise InvalidRequestParamsError(f"model must be a non-empty string, got {model!r}")
        if not isinstance(tokenizer, Tokenizer):
            raise InvalidRequestParamsError(
                f"tokenizer must be an sdk.tokens.Tokenizer (e.g. from tokenizer_from_gguf), "
                f"got {type(tokenizer).__name__}"
            )
        for config, name in self._served_as(model):
            self._policies.tokenizers.register(str(config.root_url), name, tokenizer)

    def _served_as(self, model: str) -> list[tuple[ClientConfig, str]]:
        """The servers ``model`` is sent to, each with its name for it (a router's several)."""
        return [(self._config, model)]

    def _tokenizer_flow(self, model: str) -> Flow[Tokenizer]:
        from ._policies.remote import tokenizer_flow

        return tokenizer_flow(self._config, self._policies.tokenizers, model)

    def _count_flow(
        self,
        model: str,
        messages: object | None,
        prompt: str | None,
        tooling: Mapping[str, Any] | None = None,
    ) -> Flow[TokenCount]:
        from ._exceptions import InvalidRequestParamsError

        if (messages is None) == (prompt is None):
            raise InvalidRequestParamsError("pass exactly one of messages=... or prompt=...")
        if prompt is not None and not isinstance(prompt, str):
            raise InvalidRequestParamsError(f"prompt must be a str, got {type(prompt).__name__}")
        if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Iterable | None):
            raise InvalidRequestParamsError("messages must be a list of chat messages")
        options = {k: v for k, v in (tooling or {}).items() if v is not None}
        if options and prompt is not None:
            raise InvalidRequestParamsError(f"{', '.join(options)} belong to a chat: pass messages")
        request: Any = prompt if messages is None else list(messages)
        return self._send_count(model, request, options)

    def _send_count(
        self, model: str, request: list[dict[str, Any]] | str, options: Mapping[str, Any]
    ) -> Flow[TokenCount]:
        from ._policies.counting import count_flow

        return count_flow(self._config, self._policies.tokenizers, model, request, options)
