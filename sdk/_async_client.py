"""``AsyncClient``: ``_client.py`` with ``await`` (asyncio; the I/O shell around ``_protocol``).

Keep it a line-for-line twin of ``Client``: a test diffs the two files after replacing the
async spellings, so any other difference fails the build.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, TypeVar

import httpx
from typing_extensions import Unpack

from ._exceptions import APIError, map_transport_errors
from ._protocol.actions import Action, Close, Flow, ReadBody, Send, Sent, Sleep
from ._protocol.options import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    ClientConfig,
    ClientOptions,
    RequestOptions,
    RetryPolicy,
    TimeoutTypes,
    make_config,
    update_config,
)
from ._streaming import AsyncStream

# The wire models (pydantic) and the flows that use them load on the first call, not here:
# creating a client stays cheap (benchmarks/bench_sdk.py measures it).
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._protocol.request import APICall
    from ._resources import (
        AsyncChat,
        AsyncCompletions,
        AsyncEmbeddings,
        AsyncModels,
        DetokenizeKwargs,
        TokenizeKwargs,
    )
    from .tokens import RateLimiter, TokenBudget, Tokenizer
    from .types import APIObject, DetokenizeResponse, TokenizeResponse

__all__ = ["AsyncClient"]

T = TypeVar("T", bound="APIObject")
R = TypeVar("R")


class AsyncClient:
    """An asyncio client for an OpenAI-compatible server; ``Client`` with ``await``.

    >>> from sdk import AsyncClient
    >>> async with AsyncClient() as client:  # doctest: +SKIP
    ...     reply = await client.chat.completions.create(
    ...         model="smollm2-135m-instruct",
    ...         messages=[{"role": "user", "content": "Hello!"}],
    ...     )

    Arguments as for ``Client``; ``http_client`` is an ``httpx.AsyncClient``, ``transport``
    an ``httpx.AsyncBaseTransport`` and ``sleep`` a coroutine function.
    """

    def __init__(
        self,
        *,
        base_url: str | httpx.URL | None = None,
        api_key: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
        token_budget: TokenBudget | None = None,
        rate_limiter: RateLimiter | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        options = ClientOptions(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            retry_policy=retry_policy,
            default_headers=default_headers,
            token_budget=token_budget,
            rate_limiter=rate_limiter,
        )
        if max_retries is not None:
            options["max_retries"] = max_retries
        config = make_config(options, os.environ)
        if http_client is not None and transport is not None:
            raise ValueError("pass either http_client or transport, not both")
        owns_http = http_client is None
        if http_client is None:
            http_client = httpx.AsyncClient(
                transport=transport, limits=DEFAULT_LIMITS, follow_redirects=True
            )
        self._setup(config, http_client, owns_http, sleep)

    def _setup(
        self,
        config: ClientConfig,
        http: httpx.AsyncClient,
        owns_http: bool,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._config, self._http, self._owns_http, self._sleep = config, http, owns_http, sleep

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

    def with_options(self, **changes: Unpack[ClientOptions]) -> AsyncClient:
        """A copy with some settings changed, sharing this client's connection pool.

        >>> await client.with_options(timeout=5.0, max_retries=0).models.list()  # doctest: +SKIP
        """
        copy = object.__new__(type(self))
        copy._setup(update_config(self._config, changes), self._http, False, self._sleep)
        return copy

    async def close(self) -> None:
        """Close the connection pool, unless it was passed in as ``http_client``."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- resources ----------------------------------------------------------------------

    @cached_property
    def chat(self) -> AsyncChat:
        from ._resources import AsyncChat

        return AsyncChat(self)

    @cached_property
    def completions(self) -> AsyncCompletions:
        from ._resources import AsyncCompletions

        return AsyncCompletions(self)

    @cached_property
    def embeddings(self) -> AsyncEmbeddings:
        from ._resources import AsyncEmbeddings

        return AsyncEmbeddings(self)

    @cached_property
    def models(self) -> AsyncModels:
        from ._resources import AsyncModels

        return AsyncModels(self)

    async def tokenize(self, **kwargs: Unpack[TokenizeKwargs]) -> TokenizeResponse:
        """Token ids of a prompt or of chat messages, counted by the server (``POST /tokenize``).

        >>> (await client.tokenize(prompt="Hello world")).tokens  # doctest: +SKIP
        [19556, 905]
        """
        from ._protocol.request import tokenize_call

        return await self._request(*tokenize_call(kwargs))

    async def detokenize(
        self, tokens: Sequence[int], **kwargs: Unpack[DetokenizeKwargs]
    ) -> DetokenizeResponse:
        """The text of token ids (``POST /detokenize``).

        >>> (await client.detokenize([19556, 905])).prompt  # doctest: +SKIP
        'Hello world'
        """
        from ._protocol.request import detokenize_call

        return await self._request(*detokenize_call(tokens, kwargs))

    async def tokenizer(self, model: str) -> Tokenizer:
        """The tokenizer of ``model``, fetched once and cached (see ``Client.tokenizer``).

        >>> tok = await client.tokenizer("smollm2-135m-instruct")  # doctest: +SKIP
        >>> tok.count("Hello world")  # doctest: +SKIP
        2
        """
        from .tokens.remote import tokenizer_flow

        return await self._run(tokenizer_flow(self._config, model))

    # --- the driver ---------------------------------------------------------------------

    async def _request(self, call: APICall[T], options: RequestOptions) -> T:
        from .tokens.guard import guarded_call_flow

        return await self._run(guarded_call_flow(self._config, call, options))

    async def _stream(self, call: APICall[T], options: RequestOptions) -> AsyncStream[T]:
        assert call.accumulator is not None
        from .tokens.guard import guarded_stream_flow

        start = await self._run(guarded_stream_flow(self._config, call, options))
        return AsyncStream(start, call.accumulator())

    async def _run(self, flow: Flow[R]) -> R:
        opened: list[httpx.Response] = []
        reply: object = None
        error: APIError | None = None
        try:
            while True:
                try:
                    action = flow.send(reply) if error is None else flow.throw(error)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                reply, error = None, None
                try:
                    reply = await self._perform(action, opened)
                except APIError as exc:
                    error = exc
        except BaseException:  # including asyncio.CancelledError
            flow.close()
            for response in opened:  # a flow that did not finish leaves nothing open
                await response.aclose()
            raise

    async def _perform(self, action: Action, opened: list[httpx.Response]) -> object:
        if isinstance(action, Sleep):
            await self._sleep(action.seconds)
            return None
        if isinstance(action, Close):
            await action.response.aclose()
            return None
        if isinstance(action, Send):
            with map_transport_errors(action.request):
                response = await self._http.send(action.request, stream=True)
            opened.append(response)
            return Sent(response, response.aiter_bytes())
        with map_transport_errors(action.response.request):
            if isinstance(action, ReadBody):
                return await action.response.aread()
            return await anext(action.chunks, None)
