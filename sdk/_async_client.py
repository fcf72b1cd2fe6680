"""``AsyncClient``: ``_client.py`` with ``await`` (asyncio; the driver of the sans-I/O core).

Keep it a line-for-line twin of ``Client``: a test diffs the two after replacing the async
spellings, so any other difference fails the build.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, Self, TypeVar

import httpx
from typing_extensions import Unpack

from ._base_client import BaseClient
from ._exceptions import APIError, map_transport_errors
from ._protocol.actions import Action, Close, Flow, ReadBody, Send, Sent, Sleep
from ._protocol.options import DEFAULT_LIMITS
from ._streaming import AsyncStream

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ._base_client import CallBuilder
    from ._policies.counting import TokenCount
    from ._resources import (
        AsyncChat,
        AsyncCompletions,
        AsyncEmbeddings,
        AsyncModels,
        DetokenizeKwargs,
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

__all__ = ["AsyncClient"]

T = TypeVar("T", bound="APIObject")
R = TypeVar("R")


class AsyncClient(
    BaseClient[httpx.AsyncClient, httpx.AsyncBaseTransport, Callable[[float], Awaitable[None]]]
):
    """An asyncio client for an OpenAI-compatible server; ``Client`` with ``await``.

    >>> from sdk import AsyncClient
    >>> async with AsyncClient() as client:  # doctest: +SKIP
    ...     reply = await client.chat.completions.create(
    ...         model="smollm2-135m-instruct",
    ...         messages=[{"role": "user", "content": "Hello!"}],
    ...     )

    Arguments as for ``Client``; ``http_client`` is an ``httpx.AsyncClient``, ``transport``
    an ``httpx.AsyncBaseTransport`` and ``sleep`` a coroutine function (default
    ``asyncio.sleep``).
    """

    def _new_http(self, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=transport, limits=DEFAULT_LIMITS, follow_redirects=True)

    def _default_sleep(self) -> Callable[[float], Awaitable[None]]:
        return asyncio.sleep

    async def close(self) -> None:
        """Close the connection pool, unless it was passed in as ``http_client``."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
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

        return await self._request(tokenize_call, kwargs)

    async def detokenize(
        self, tokens: Sequence[int], **kwargs: Unpack[DetokenizeKwargs]
    ) -> DetokenizeResponse:
        """The text of token ids (``POST /detokenize``).

        >>> (await client.detokenize([19556, 905])).prompt  # doctest: +SKIP
        'Hello world'
        """
        from ._protocol.request import detokenize_call

        return await self._request(lambda rest: detokenize_call(tokens, rest), kwargs)

    async def tokenizer(self, model: str) -> Tokenizer:
        """The tokenizer of ``model``, fetched once (``GET /models/{model}/tokenizer``) and
        cached on disk by its sha256; counts equal the server's when ``exact`` is true.

        >>> tok = await client.tokenizer("smollm2-135m-instruct")  # doctest: +SKIP
        >>> tok.count_chat([{"role": "user", "content": "Hi"}]), tok.exact  # doctest: +SKIP
        (10, True)

        Servers without the export get a hosted model's public encoding or an estimate
        (``exact=False``, with a ``TokenCountWarning``).
        """
        return await self._run(self._tokenizer_flow(model))

    async def count_tokens(
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

        >>> await client.count_tokens("smollm2-135m-instruct", prompt="Hi")  # doctest: +SKIP
        TokenCount(tokens=1, exact=True, source='server', context_length=8192)
        """
        tooling: dict[str, object] = {
            "tools": tools,
            "tool_choice": tool_choice,
            "parallel_tool_calls": parallel_tool_calls,
        }
        return await self._run(self._count_flow(model, messages, prompt, tooling))

    # --- the driver ---------------------------------------------------------------------

    async def _request(self, build: CallBuilder[T], kwargs: Mapping[str, Any]) -> T:
        return await self._run(self._call_flow(build, kwargs))

    async def _stream(self, build: CallBuilder[T], kwargs: Mapping[str, Any]) -> AsyncStream[T]:
        return AsyncStream(await self._run(self._stream_flow(build, kwargs)), self._perform)

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
