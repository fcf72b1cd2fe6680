"""``Client``: the synchronous driver of the sans-I/O core.

It drives ``_protocol`` flows over an ``httpx.Client``: send, read, close and sleep when a
flow asks, and throw mapped transport errors back into it. Everything else — settings,
policies, which flow a call runs — is ``BaseClient``'s; ``_async_client.py`` is this file
with ``await`` (a test keeps the two twins).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, Self, TypeVar

import httpx
from typing_extensions import Unpack

from ._base_client import BaseClient
from ._exceptions import APIError, map_transport_errors
from ._protocol.actions import Action, Close, Flow, ReadBody, Send, Sent, Sleep
from ._protocol.options import DEFAULT_LIMITS
from ._streaming import Stream

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ._base_client import CallBuilder
    from ._policies.counting import TokenCount
    from ._resources import (
        Chat,
        Completions,
        DetokenizeKwargs,
        Embeddings,
        Models,
        TokenizeKwargs,
    )
    from .tokens import Tokenizer
    from .types import (
        APIObject,
        ChatCompletionToolChoiceOptionParam,
        ChatCompletionToolParam,
        ChatMessageParam,
        DetokenizeResponse,
        TokenizeResponse,
    )

__all__ = ["Client"]

T = TypeVar("T", bound="APIObject")
R = TypeVar("R")


class Client(BaseClient[httpx.Client, httpx.BaseTransport, Callable[[float], None]]):
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
    the network (``httpx.MockTransport`` in tests). ``sleep`` is what retries wait with
    (default ``time.sleep``).

    ``token_budget`` (``sdk.TokenBudget``) checks every chat and completion call against the
    model's context window before sending it, trimming it if asked; ``rate_limiter``
    (``sdk.RateLimiter``) keeps calls under requests/tokens per minute. Both are off by
    default, and then no call costs anything extra; when on, each model's tokenizer is
    fetched once per client (see ``tokenizer``).

    ``hooks`` watch every call: ``sdk.Hooks(on_request=..., on_response=..., on_end=...)``
    for plain callbacks, ``sdk.otel.OpenTelemetryHooks()`` for a span per call (the ``otel``
    extra), or a list of both.
    """

    def _new_http(self, transport: httpx.BaseTransport | None) -> httpx.Client:
        return httpx.Client(transport=transport, limits=DEFAULT_LIMITS, follow_redirects=True)

    def _default_sleep(self) -> Callable[[float], None]:
        return time.sleep

    def close(self) -> None:
        """Close the connection pool, unless it was passed in as ``http_client``."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
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

        return self._request(tokenize_call, kwargs)

    def detokenize(
        self, tokens: Sequence[int], **kwargs: Unpack[DetokenizeKwargs]
    ) -> DetokenizeResponse:
        """The text of token ids (``POST /detokenize``).

        >>> client.detokenize([19556, 905]).prompt  # doctest: +SKIP
        'Hello world'
        """
        from ._protocol.request import detokenize_call

        return self._request(lambda rest: detokenize_call(tokens, rest), kwargs)

    def tokenizer(self, model: str) -> Tokenizer:
        """The tokenizer of ``model``, fetched once (``GET /models/{model}/tokenizer``) and
        cached on disk by its sha256; counts equal the server's when ``exact`` is true.

        >>> tok = client.tokenizer("smollm2-135m-instruct")  # doctest: +SKIP
        >>> tok.count_chat([{"role": "user", "content": "Hi"}]), tok.exact  # doctest: +SKIP
        (10, True)

        Servers without the export get a hosted model's public encoding or an estimate
        (``exact=False``, with a ``TokenCountWarning``).
        """
        return self._run(self._tokenizer_flow(model))

    def count_tokens(
        self,
        model: str,
        *,
        messages: Sequence[ChatMessageParam | Mapping[str, Any]] | None = None,
        prompt: str | None = None,
        tools: Sequence[ChatCompletionToolParam] | None = None,
        tool_choice: ChatCompletionToolChoiceOptionParam | None = None,
        parallel_tool_calls: bool | None = None,
    ) -> TokenCount:
        """Prompt tokens of a chat (``messages``) or a completion ``prompt`` for ``model``,
        counted the best way this server allows: the model's tokenizer (exported by the server
        or registered), else the server's own tokenize endpoints (vLLM's ``/tokenize``,
        llama.cpp's ``/apply-template`` + ``/tokenize``), else a public encoding or an
        estimate (``exact=False``). A chat's ``tools`` (and ``tool_choice``) are part of its
        prompt and counted with it.

        >>> client.count_tokens("smollm2-135m-instruct", prompt="Hi")  # doctest: +SKIP
        TokenCount(tokens=1, exact=True, source='server', context_length=8192)
        """
        tooling: dict[str, object] = {
            "tools": tools,
            "tool_choice": tool_choice,
            "parallel_tool_calls": parallel_tool_calls,
        }
        return self._run(self._count_flow(model, messages, prompt, tooling))

    # --- the driver ---------------------------------------------------------------------

    def _request(self, build: CallBuilder[T], kwargs: Mapping[str, Any]) -> T:
        return self._run(self._call_flow(build, kwargs))

    def _stream(self, build: CallBuilder[T], kwargs: Mapping[str, Any]) -> Stream[T]:
        return Stream(self._run(self._stream_flow(build, kwargs)), self._perform)

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
