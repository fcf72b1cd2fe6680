"""``Router`` and ``AsyncRouter``: one client over several OpenAI-compatible servers.

A router *is* a ``Client`` (an ``AsyncClient``) whose calls run the routing flows
(``flow.py``) instead of a single server's; everything else — resources, streams, the driver
loop that performs a flow's actions, hooks — is the client's. ``RouterBase`` holds what both
routers add, without I/O, as ``BaseClient`` does for the clients.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Self, TypeVar

import httpx
from typing_extensions import Unpack

from sdk._async_client import AsyncClient
from sdk._base_client import USER_AGENT, BaseClient, HttpT, SleepT, TransportT
from sdk._client import Client
from sdk._exceptions import RouterConfigError
from sdk._policies.options import (
    AUTO,
    BudgetSetting,
    ClientSettings,
    HooksSetting,
    Policies,
    hooks_tuple,
)
from sdk._protocol.options import (
    DEFAULT_TIMEOUT,
    ClientConfig,
    ClientOptions,
    RequestOptions,
    RetryPolicy,
    TimeoutTypes,
    make_config,
)
from sdk._protocol.prefix import AffinityPolicy
from sdk._protocol.routing import EndpointStatus, HealthPolicy, Routing, Strategy

from .endpoint import Endpoint
from .table import RouteTable

if TYPE_CHECKING:
    from sdk._policies.counting import TokenCount
    from sdk._policies.options import PolicyOptions
    from sdk._protocol.actions import Flow
    from sdk._protocol.flow import StreamStart
    from sdk._protocol.request import APICall
    from sdk.tokens import Tokenizer
    from sdk.types import APIObject

__all__ = ["AsyncRouter", "Router", "RouterBase"]

T = TypeVar("T", bound="APIObject")

_PER_ENDPOINT = ("base_url", "api_key", "rate_limiter")  # settings an Endpoint carries


class RouterBase(BaseClient[HttpT, TransportT, SleepT]):
    """What ``Router`` and ``AsyncRouter`` add to a client (see ``Router`` for the arguments)."""

    _table: RouteTable

    def __init__(
        self,
        endpoints: Sequence[Endpoint | str | httpx.URL],
        *,
        strategy: Strategy = "least_outstanding",
        health: HealthPolicy | None = None,
        affinity: AffinityPolicy | None = None,
        api_key: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
        token_budget: BudgetSetting = AUTO,
        hooks: HooksSetting = None,
        http_client: HttpT | None = None,
        transport: TransportT | None = None,
        sleep: SleepT | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(endpoints, str | httpx.URL) or not isinstance(endpoints, Sequence):
            raise RouterConfigError(f"endpoints must be a list, got {endpoints!r}")
        listed = [e if isinstance(e, Endpoint) else Endpoint(e) for e in endpoints]
        routing = Routing(listed, strategy, health=health, affinity=affinity, clock=clock)
        options = ClientOptions(
            base_url=listed[0].base_url,
            api_key=api_key,
            timeout=timeout,
            retry_policy=retry_policy,
            default_headers=default_headers,
        )
        if max_retries is not None:
            options["max_retries"] = max_retries
        self._config = make_config(options, os.environ, USER_AGENT)
        self._policies = Policies(token_budget, hooks=hooks_tuple(hooks))
        self._table = RouteTable.build(routing, self._config, self._policies)
        self._init_io(http_client, transport, sleep)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The endpoints, in the order given (``base_url`` is the first one's)."""
        return tuple(route.endpoint for route in self._table.routes)

    @property
    def strategy(self) -> str:
        return self._table.routing.strategy

    def __repr__(self) -> str:
        names = [route.endpoint.name for route in self._table.routes]
        return f"{type(self).__name__}(endpoints={names!r}, strategy={self.strategy!r})"

    def endpoint_status(self) -> list[EndpointStatus]:
        """Each endpoint's calls in flight, failures and cooldown, as the router sees them now.

        >>> [(s.name, s.outstanding, s.cooldown_left) for s in router.endpoint_status()]
        ... # doctest: +SKIP
        [('10.0.0.7:8000', 3, 0.0), ('10.0.0.8:8000', 0, 12.5)]
        """
        return self._table.routing.status()

    def pin(self, name: str) -> Self:
        """A view of this router that sends every call to the endpoint ``name`` (no failover),
        sharing its connections, load and health records: per-endpoint tokenizers and counts.

        >>> router.pin("10.0.0.7:8000").tokenizer("llama").count("Hello")  # doctest: +SKIP
        """
        copy = self.with_options()
        copy._table = self._table.pinned(name)
        return copy

    def register_tokenizer(self, model: str, tokenizer: Tokenizer) -> None:
        """Count ``model``'s prompts with ``tokenizer`` on every endpoint that serves it (under
        the endpoint's own name for it); ``router.pin(name).register_tokenizer(...)`` on one.

        >>> router.register_tokenizer("smollm2-135m-instruct", tokenizer_from_gguf(path))
        ... # doctest: +SKIP
        """
        super().register_tokenizer(model, tokenizer)

    def _served_as(self, model: str) -> list[tuple[ClientConfig, str]]:
        routes = self._table.routes
        serving = self._table.routing.candidates(model, self._table.only)
        return [(routes[i].config, routes[i].endpoint.model_name(model)) for i in serving]

    def with_options(self, **changes: Unpack[ClientSettings]) -> Self:
        """A copy with router-wide settings changed (timeout, retries, headers, token budget,
        hooks), sharing connections, endpoints, load and health records. The URL, key and
        rate limiter are each endpoint's own: build another router to change those."""
        wrong = sorted(set(changes) & set(_PER_ENDPOINT))
        if wrong:
            raise RouterConfigError(
                f"{', '.join(wrong)} belong to each Endpoint; build a new Router to change them"
            )
        copy = super().with_options(**changes)
        table = RouteTable.build(self._table.routing, copy._config, copy._policies)
        copy._table = replace(table, only=self._table.only)
        return copy

    # --- the flows: routed instead of sent to one server ------------------------------------

    def _send_call(
        self, call: APICall[T], options: RequestOptions, policy_options: PolicyOptions
    ) -> Flow[T]:
        from .flow import routed_call_flow

        return routed_call_flow(self._table, call, options, policy_options)

    def _send_stream(
        self, call: APICall[T], options: RequestOptions, policy_options: PolicyOptions
    ) -> Flow[StreamStart[T, Any]]:
        from .flow import routed_stream_flow

        return routed_stream_flow(self._table, call, options, policy_options)

    def _tokenizer_flow(self, model: str) -> Flow[Tokenizer]:
        from .flow import routed_tokenizer_flow

        return routed_tokenizer_flow(self._table, model)

    def _send_count(
        self, model: str, request: list[dict[str, Any]] | str, options: Mapping[str, Any]
    ) -> Flow[TokenCount]:
        from .flow import routed_count_flow

        return routed_count_flow(self._table, model, request, options)


class Router(RouterBase[httpx.Client, httpx.BaseTransport, Callable[[float], None]], Client):
    """A synchronous client over several OpenAI-compatible servers, with failover.

    >>> from sdk import Endpoint, Router
    >>> with Router(
    ...     ["http://10.0.0.7:8000/v1", Endpoint("http://10.0.0.8:8000/v1", weight=2)],
    ...     strategy="prefix_affinity",
    ... ) as router:  # doctest: +SKIP
    ...     reply = router.chat.completions.create(model="smollm2-135m-instruct", messages=msgs)
    ...     reply.response_info.endpoint  # which one answered
    '10.0.0.8:8000'

    ``endpoints``: ``Endpoint``s, or base URLs. ``strategy``: ``"least_outstanding"`` (the
    default), ``"round_robin"`` (weighted) or ``"prefix_affinity"`` (prompts that share a
    prefix go to the replica whose prefix cache holds it; see ``sdk.AffinityPolicy``).
    ``health`` (``sdk.HealthPolicy``): the consecutive failures after which an endpoint cools
    down, and for how long. A call that fails with a connection error, a timeout, 429 or 5xx
    moves to another endpoint at once, keeping its idempotency key (a stream: before its first
    event; after it, only a reproducible one is resumed, see ``RetryPolicy.resume_streams``);
    ``max_retries`` / ``retry_policy`` bound and pace its attempts in all.

    The resources are ``Client``'s; ``api_key``, ``timeout``, ``default_headers``,
    ``token_budget`` and ``hooks`` apply to every endpoint (an ``Endpoint`` may bring its own
    key, budget and ``RateLimiter``). ``clock`` (monotonic seconds) times cooldowns; tests pass
    a simulated one with ``sleep``. ``pin(name)`` sends calls to one endpoint;
    ``endpoint_status()`` shows load and health.
    """


class AsyncRouter(
    RouterBase[httpx.AsyncClient, httpx.AsyncBaseTransport, Callable[[float], Awaitable[None]]],
    AsyncClient,
):
    """``Router`` for asyncio: an ``AsyncClient`` over several servers, with failover.

    >>> async with AsyncRouter(["http://10.0.0.7:8000/v1", "http://10.0.0.8:8000/v1"]) as r:
    ...     reply = await r.chat.completions.create(model="m", messages=msgs)  # doctest: +SKIP
    """
