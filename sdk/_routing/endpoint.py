"""``Endpoint``: one server behind a ``Router`` — where it is, what it serves, its limits."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import httpx

from sdk._exceptions import RouterConfigError
from sdk._policies.options import AUTO, BudgetSetting
from sdk._policies.ratelimit import RateLimiter
from sdk._protocol.options import parse_base_url
from sdk.tokens.budget import TokenBudget

__all__ = ["INHERIT", "Endpoint", "EndpointBudget"]

INHERIT: Literal["inherit"] = "inherit"
# an endpoint's token budget: its own, or "inherit" the router's ``token_budget``
EndpointBudget: TypeAlias = BudgetSetting | Literal["inherit"]


@dataclass(frozen=True, init=False)
class Endpoint:
    """One OpenAI-compatible server behind a ``Router``.

    >>> Endpoint("http://10.0.0.7:8000/v1", weight=2, models={"llama"})  # doctest: +SKIP
    >>> Endpoint("https://api.example.com/v1", api_key=key,
    ...          aliases={"llama": "meta-llama/Llama-3.1-8B-Instruct"})  # doctest: +SKIP

    ``name`` (default: ``host:port`` and any path but ``/v1``) names it in errors, in
    ``router.endpoint_status()`` and in ``response_info.endpoint``. ``weight`` scales its share
    of calls (round robin) or of load (least outstanding). ``models``: the public model names
    it serves (``None``: any; the keys of ``aliases`` are added), so a call for a model goes
    only where it is served. ``aliases`` maps a public name to this server's own name for it.
    ``rate_limiter`` keeps this endpoint's requests and tokens per minute in bounds;
    ``token_budget`` replaces the router's for calls that go here. ``api_key`` defaults to the
    router's.
    """

    base_url: httpx.URL
    name: str
    api_key: str | None = field(repr=False)
    weight: float
    models: frozenset[str] | None
    aliases: Mapping[str, str]
    rate_limiter: RateLimiter | None
    token_budget: EndpointBudget

    def __init__(
        self,
        base_url: str | httpx.URL,
        *,
        api_key: str | None = None,
        name: str | None = None,
        weight: float = 1.0,
        models: Collection[str] | None = None,
        aliases: Mapping[str, str] | None = None,
        rate_limiter: RateLimiter | None = None,
        token_budget: EndpointBudget = INHERIT,
    ) -> None:
        try:
            url = parse_base_url(base_url)
        except ValueError as exc:
            raise RouterConfigError(str(exc)) from None
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            raise RouterConfigError(f"weight must be a number > 0, got {weight!r}")
        if weight == float("inf"):
            raise RouterConfigError("weight must be finite")
        aliases = dict(aliases or {})
        if isinstance(models, str):
            raise RouterConfigError(f"models must be a collection of names, got {models!r}")
        served = None if models is None else frozenset(models) | frozenset(aliases)
        if not (token_budget in (INHERIT, AUTO, None) or isinstance(token_budget, TokenBudget)):
            raise RouterConfigError(
                "token_budget must be a TokenBudget, 'auto', 'inherit' or None, "
                f"got {token_budget!r}"
            )
        if rate_limiter is not None and not isinstance(rate_limiter, RateLimiter):
            raise RouterConfigError(
                f"rate_limiter must be an sdk.RateLimiter, got {rate_limiter!r}"
            )
        set_ = object.__setattr__
        set_(self, "base_url", url)
        set_(self, "name", name or _default_name(url))
        set_(self, "api_key", api_key)
        set_(self, "weight", float(weight))
        set_(self, "models", served)
        set_(self, "aliases", aliases)
        set_(self, "rate_limiter", rate_limiter)
        set_(self, "token_budget", token_budget)

    def model_name(self, public: str) -> str:
        """This server's name for the public model name ``public``."""
        return self.aliases.get(public, public)

    def public_name(self, own: str) -> str:
        """The public name for this server's model name ``own`` (the reverse of ``aliases``)."""
        return next((public for public, name in self.aliases.items() if name == own), own)


def _default_name(url: httpx.URL) -> str:
    path = url.path.rstrip("/")
    netloc = url.netloc.decode("ascii")
    return netloc if path in ("", "/v1") else netloc + path
