"""``Client``: the synchronous shell around the sans-I/O core.

It owns an ``httpx.Client`` and drives ``_protocol`` flows: send, read, close and sleep when
a flow asks, and throw mapped transport errors back into it. Every decision (retries, status
errors, parsing, streams) is made in ``_protocol``; ``_async_client.py`` is this file with
``await``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
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
from ._streaming import Stream

# The wire models (pydantic) and the flows that use them load on the first call, not here:
# creating a client stays cheap (benchmarks/bench_sdk.py measures it).
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._protocol.request import APICall
    from ._resources import (
        Chat,
        Completions,
        DetokenizeKwargs,
        Embeddings,
        Models,
        TokenizeKwargs,
    )
    from .tokens import RateLimiter, TokenBudget, Tokenizer
    from .types import APIObject, DetokenizeResponse, TokenizeResponse

__all__ = ["Client"]

T = TypeVar("T", bound="APIObject")
R = TypeVar("R")


class Client:
    """A synchronous client for an OpenAI-compatible server.

    >>> from sdk import Client
    >>> with Client(base_url="http://127.0.0.1:8000/v1") as client:  # doctest: +SKIP
    ...     reply = client.chat.completions.create(
    ...         model="smollm2-135m-instruct",
    ...         messages=[{"role": "user", "content": "Hello!"}],
    ...     )
    ...     print(reply.choices[0].message.content)

    ``base_url`` and ``api_key`` default to ``LLM_SDK_BASE_URL`` / ``LLM_SDK_API_KEY``.
    ``timeout`` is an ``httpx.Timeout`` or seconds (``None``: no timeout). Pass
    ``http_client`` to share a pool (it is then yours to close) or ``transport`` to replace
    the network (``httpx.MockTransport`` in tests). ``sleep`` is what retries wait with.

    ``token_budget`` (``sdk.TokenBudget``) checks every chat and completion call against the
    model's context window before sending it, trimming it if asked; ``rate_limiter``
    (``sdk.RateLimiter``) keeps calls under requests/tokens per minute. Both are off by
    default, and then no call costs anything extra; when on, each model's tokenizer is
    fetched once per client (see ``tokenizer``).
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
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
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
            http_client = httpx.Client(
                transport=transport, limits=DEFAULT_LIMITS, follow_redirects=True
            )
        self._setup(config, http_client, owns_http, sleep)

    def _setup(
        self,
        config: ClientConfig,
        http: httpx.Client,
        owns_http: bool,
        sleep: Callable[[float], None],
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

    def with_options(self, **changes: Unpack[ClientOptions]) -> Client:
        """A copy with some settings changed, sharing this client's connection pool.

        >>> client.with_options(timeout=5.0, max_retries=0).models.list()  # doctest: +SKIP
        """
        copy = object.__new__(type(self))
        copy._setup(update_config(self._config, changes), self._http, False, self._sleep)
        return copy

    def close(self) -> None:
        """Close the connection pool, unless it was passed in as ``http_client``."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- resources ----------------------------------------------------------------------

    @cached_property
    def chat(self) -> Chat:
        from ._resources import Chat

        return Chat(self)

    @cached_property
    def completions(self) -> Completions:
        from ._resources import Completions

        return Completions(self)

    @cached_property
    def embeddings(self) -> Embeddings:
        from ._resources import Embeddings

        return Embeddings(self)

    @cached_property
    def models(self) -> Models:
        from ._resources import Models

        return Models(self)

    def tokenize(self, **kwargs: Unpack[TokenizeKwargs]) -> TokenizeResponse:
        """Token ids of a prompt or of chat messages, counted by the server (``POST /tokenize``).

        >>> client.tokenize(prompt="Hello world").tokens  # doctest: +SKIP
        [19556, 905]
        """
        from ._protocol.request import tokenize_call

        return self._request(*tokenize_call(kwargs))

    def detokenize(
        self, tokens: Sequence[int], **kwargs: Unpack[DetokenizeKwargs]
    ) -> DetokenizeResponse:
        """The text of token ids (``POST /detokenize``).

        >>> client.detokenize([19556, 905]).prompt  # doctest: +SKIP
        'Hello world'
        """
        from ._protocol.request import detokenize_call

        return self._request(*detokenize_call(tokens, kwargs))

    def tokenizer(self, model: str) -> Tokenizer:
        """The tokenizer of ``model``, fetched once (``GET /models/{model}/tokenizer``) and
        cached on disk by its sha256; counts equal the server's when ``exact`` is true.

        >>> tok = client.tokenizer("smollm2-135m-instruct")  # doctest: +SKIP
        >>> tok.count_chat([{"role": "user", "content": "Hi"}]), tok.exact  # doctest: +SKIP
        (10, True)

        Servers without the export get a hosted model's public encoding or an estimate
        (``exact=False``, with a ``TokenCountWarning``).
        """
        from .tokens.remote import tokenizer_flow

        return self._run(tokenizer_flow(self._config, model))

    # --- the driver ---------------------------------------------------------------------

    def _request(self, call: APICall[T], options: RequestOptions) -> T:
        from .tokens.guard import guarded_call_flow

        return self._run(guarded_call_flow(self._config, call, options))

    def _stream(self, call: APICall[T], options: RequestOptions) -> Stream[T]:
        assert call.accumulator is not None
        from .tokens.guard import guarded_stream_flow

        start = self._run(guarded_stream_flow(self._config, call, options))
        return Stream(start, call.accumulator())

    def _run(self, flow: Flow[R]) -> R:
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
                    reply = self._perform(action, opened)
                except APIError as exc:
                    error = exc
        except BaseException:
            flow.close()
            for response in opened:  # a flow that did not finish leaves nothing open
                response.close()
            raise

    def _perform(self, action: Action, opened: list[httpx.Response]) -> object:
        if isinstance(action, Sleep):
            self._sleep(action.seconds)
            return None
        if isinstance(action, Close):
            action.response.close()
            return None
        if isinstance(action, Send):
            with map_transport_errors(action.request):
                response = self._http.send(action.request, stream=True)
            opened.append(response)
            return Sent(response, response.iter_bytes())
        with map_transport_errors(action.response.request):
            if isinstance(action, ReadBody):
                return action.response.read()
            return next(action.chunks, None)
