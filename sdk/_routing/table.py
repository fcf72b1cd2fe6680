"""A router's endpoints as its flows use them: each with its config and its policies."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sdk._exceptions import RouterConfigError
from sdk._policies.options import Policies
from sdk._protocol.options import ClientConfig
from sdk._protocol.routing import Routing

from .endpoint import INHERIT, Endpoint

__all__ = ["Route", "RouteTable"]


@dataclass(frozen=True)
class Route:
    """An endpoint with what its attempts are sent with: its config and its policies."""

    endpoint: Endpoint
    config: ClientConfig
    policies: Policies


@dataclass(frozen=True)
class RouteTable:
    """A router's endpoints and shared routing state; ``only`` restricts it (``pin``)."""

    routes: tuple[Route, ...]
    routing: Routing
    retry_config: ClientConfig  # the router-wide settings: retry policy, timeout, headers
    only: frozenset[int] | None = None

    @classmethod
    def build(cls, routing: Routing, config: ClientConfig, policies: Policies) -> RouteTable:
        routes = []
        for endpoint in routing.endpoints:
            assert isinstance(endpoint, Endpoint)
            api_key = config.api_key if endpoint.api_key is None else endpoint.api_key
            budget = endpoint.token_budget
            own = Policies(
                token_budget=policies.token_budget if budget == INHERIT else budget,
                rate_limiter=endpoint.rate_limiter,
                tokenizers=policies.tokenizers,  # keyed by server: each endpoint's own
            )
            routes.append(
                Route(endpoint, replace(config, base_url=endpoint.base_url, api_key=api_key), own)
            )
        return cls(tuple(routes), routing, config)

    def pinned(self, name: str) -> RouteTable:
        """This table with every call sent to the endpoint called ``name``."""
        for i, route in enumerate(self.routes):
            if route.endpoint.name == name and (self.only is None or i in self.only):
                return replace(self, only=frozenset({i}))
        names = ", ".join(repr(r.endpoint.name) for r in self.routes)
        raise RouterConfigError(f"no endpoint is called {name!r} (the endpoints: {names})")
