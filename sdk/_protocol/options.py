"""Client configuration and per-call options for HTTP: defaults, environment, validation.

Only what it takes to build and retry a request lives here. What wraps calls from outside
the core (token budgets, rate limits, the tokenizers a client has fetched) is in
``sdk._policies``, which extends these options with its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, cast

import httpx

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "ClientConfig",
    "ClientOptions",
    "RequestOptions",
    "RetryPolicy",
    "TimeoutTypes",
    "make_config",
    "parse_base_url",
    "split_options",
    "to_timeout",
    "update_config",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
BASE_URL_ENV = "LLM_SDK_BASE_URL"
API_KEY_ENV = "LLM_SDK_API_KEY"
# httpx timeouts apply per phase (each read), not to a whole call: a long generation is fine
# as long as bytes keep coming. Connecting should be fast, hence the short connect timeout.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=5.0)

# Pool sizes as openai-python (#1281): httpx's defaults (100/20) run out under concurrency.
DEFAULT_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)

TimeoutTypes = float | httpx.Timeout | None


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before retrying a failed call.

    Delays grow as ``initial_delay * 2**n`` up to ``max_delay``, each shortened by a random
    fraction of at most ``jitter``. A server's ``retry-after-ms`` / ``Retry-After`` replaces
    the computed delay when it is at most ``max_retry_after`` seconds; a longer one means the
    call is not retried (the error carries ``retry_after`` for the caller to decide).

    ``resume_streams``: a stream that breaks after its first chunks is sent again when its
    output is reproducible (``temperature`` 0 or a ``seed``), and the chunks already
    delivered are checked and skipped (``_protocol.resume``); its retries come from the
    same ``max_retries``.

    >>> Client(retry_policy=RetryPolicy(max_retries=5, max_delay=30.0))  # doctest: +SKIP
    """

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    jitter: float = 0.25
    resume_streams: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        for name in ("initial_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter!r}")
        if not isinstance(self.resume_streams, bool):
            raise ValueError(f"resume_streams must be True or False, got {self.resume_streams!r}")


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs to build and retry requests; immutable."""

    base_url: httpx.URL
    api_key: str | None = field(repr=False)
    timeout: httpx.Timeout
    retry: RetryPolicy
    headers: Mapping[str, str]
    user_agent: str = field(default="llm-sdk", repr=False)

    @property
    def root_url(self) -> httpx.URL:
        """``base_url`` without a trailing ``/v1``: vLLM serves ``/tokenize`` at the root."""
        path = self.base_url.path.rstrip("/")
        if path.endswith("/v1"):
            path = path[: -len("/v1")]
        return self.base_url.copy_with(path=path or "/")


class ClientOptions(TypedDict, total=False):
    """The HTTP settings ``Client(...)`` / ``with_options(...)`` accept."""

    base_url: str | httpx.URL | None
    api_key: str | None
    timeout: TimeoutTypes
    max_retries: int
    retry_policy: RetryPolicy | None
    default_headers: Mapping[str, str] | None


class RequestOptions(TypedDict, total=False):
    """Per-call HTTP overrides accepted by every resource method.

    >>> client.models.list(timeout=2.0, max_retries=0)  # doctest: +SKIP
    """

    timeout: TimeoutTypes
    max_retries: int
    extra_headers: Mapping[str, str]
    extra_query: Mapping[str, str]
    extra_body: Mapping[str, object]
    idempotency_key: str


_REQUEST_OPTION_KEYS = frozenset(RequestOptions.__annotations__)


def to_timeout(value: TimeoutTypes) -> httpx.Timeout:
    """A number means that many seconds for every phase; ``None`` means no timeout at all."""
    return value if isinstance(value, httpx.Timeout) else httpx.Timeout(value)


def parse_base_url(value: str | httpx.URL) -> httpx.URL:
    """A validated ``http(s)://host[:port][/path]`` without a trailing slash (``ValueError``)."""
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"invalid base_url {str(value)!r}: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"invalid base_url {str(value)!r}: expected http(s)://host[:port][/path], "
            f"e.g. {DEFAULT_BASE_URL!r}"
        )
    return url.copy_with(path=url.path.rstrip("/") or "/")


def make_config(
    options: ClientOptions, env: Mapping[str, str], user_agent: str = "llm-sdk"
) -> ClientConfig:
    """Resolve constructor arguments, falling back to ``LLM_SDK_*`` variables, then defaults."""
    base_url = options.get("base_url") or env.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    api_key = options.get("api_key")
    policy = options.get("retry_policy") or RetryPolicy()
    if "max_retries" in options:
        policy = replace(policy, max_retries=options["max_retries"])
    return ClientConfig(
        base_url=parse_base_url(base_url),
        api_key=env.get(API_KEY_ENV) if api_key is None else api_key,
        timeout=to_timeout(options.get("timeout", DEFAULT_TIMEOUT)),
        retry=policy,
        headers=dict(options.get("default_headers") or {}),
        user_agent=user_agent,
    )


def update_config(config: ClientConfig, changes: ClientOptions) -> ClientConfig:
    """``config`` with ``changes`` applied; headers are merged, everything else replaced."""
    policy = changes.get("retry_policy") or config.retry
    if "max_retries" in changes:
        policy = replace(policy, max_retries=changes["max_retries"])
    base_url = changes.get("base_url")
    return replace(
        config,
        base_url=config.base_url if base_url is None else parse_base_url(base_url),
        api_key=changes.get("api_key", config.api_key),
        timeout=to_timeout(changes["timeout"]) if "timeout" in changes else config.timeout,
        retry=policy,
        headers={**config.headers, **(changes.get("default_headers") or {})},
    )


def split_options(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], RequestOptions]:
    """Separate a resource method's keyword arguments into body parameters and call options."""
    params = {k: v for k, v in kwargs.items() if k not in _REQUEST_OPTION_KEYS}
    options = {k: v for k, v in kwargs.items() if k in _REQUEST_OPTION_KEYS}
    return params, cast(RequestOptions, options)
