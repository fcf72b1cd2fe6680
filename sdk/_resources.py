"""The API resources: ``client.chat.completions``, ``completions``, ``embeddings``, ``models``.

Each method is a line or two: hand the client a ``_protocol`` builder (which validates the
parameters against ``sdk.types`` before anything is sent) and the keyword arguments.
Keyword arguments are typed with ``Unpack[TypedDict]``: the wire parameters from
``sdk.types`` plus the per-call ``CallOptions`` (timeout, max_retries, extra_headers,
extra_query, extra_body, idempotency_key, budget). One ``@overload`` pair types
``stream=True``.
The async classes below repeat the sync ones with ``await``, nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TypeVar, overload

from typing_extensions import Unpack

from ._chat_streaming import AsyncChatCompletionStreamManager, ChatCompletionStreamManager
from ._policies.options import CallOptions
from ._protocol.options import RequestOptions
from ._protocol.request import (
    chat_completion_call,
    chat_completion_stream_call,
    completion_call,
    completion_stream_call,
    embedding_call,
    model_list_call,
    model_retrieve_call,
)
from ._protocol.structured import parse_chat_completion, prepare_parse
from ._protocol.tool_loop import OnLimit, tool_loop
from .tools import AsyncToolRunner, ToolLike, ToolLoopResult, ToolRunner
from .types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionCreateParams,
    ChatCompletionCreateParamsBase,
    ChatCompletionParseParams,
    Completion,
    CompletionCreateParams,
    CreateEmbeddingResponse,
    EmbeddingCreateParams,
    Model,
    ModelList,
    ParsedChatCompletion,
    TokenizeParams,
)

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._client import Client
    from ._streaming import AsyncStream, Stream

__all__ = [
    "AsyncChat",
    "AsyncChatCompletions",
    "AsyncCompletions",
    "AsyncEmbeddings",
    "AsyncModels",
    "Chat",
    "ChatCompletionKwargs",
    "ChatCompletionParseKwargs",
    "ChatCompletions",
    "CompletionKwargs",
    "Completions",
    "DetokenizeKwargs",
    "EmbeddingKwargs",
    "Embeddings",
    "Models",
    "TokenizeKwargs",
    "ToolLoopKwargs",
]

T = TypeVar("T")


class ChatCompletionKwargs(ChatCompletionCreateParams, CallOptions, total=False):
    pass


class ChatCompletionParseKwargs(ChatCompletionParseParams, CallOptions, total=False):
    pass


class ToolLoopKwargs(ChatCompletionCreateParamsBase, CallOptions, total=False):
    pass


class CompletionKwargs(CompletionCreateParams, CallOptions, total=False):
    pass


class EmbeddingKwargs(EmbeddingCreateParams, CallOptions, total=False):
    pass


class TokenizeKwargs(TokenizeParams, CallOptions, total=False):
    pass


class DetokenizeKwargs(RequestOptions, total=False):
    model: str | None


# --- sync ---------------------------------------------------------------------------------


class ChatCompletions:
    def __init__(self, client: Client) -> None:
        self._client = client

    @overload
    def create(
        self, *, stream: Literal[False] = False, **kwargs: Unpack[ChatCompletionKwargs]
    ) -> ChatCompletion: ...
    @overload
    def create(
        self, *, stream: Literal[True], **kwargs: Unpack[ChatCompletionKwargs]
    ) -> Stream[ChatCompletionChunk]: ...
    def create(
        self, *, stream: bool = False, **kwargs: Unpack[ChatCompletionKwargs]
    ) -> ChatCompletion | Stream[ChatCompletionChunk]:
        """Generate the next message of a conversation (``POST /chat/completions``).

        >>> reply = client.chat.completions.create(  # doctest: +SKIP
        ...     model="smollm2-135m-instruct",
        ...     messages=[{"role": "user", "content": "Name a colour."}],
        ...     max_tokens=16,
        ... )
        >>> reply.choices[0].message.content  # doctest: +SKIP

        With ``stream=True`` it returns a ``Stream`` of ``ChatCompletionChunk``s.
        Raises ``InvalidRequestParamsError`` before sending if a parameter has a wrong type.
        """
        if stream:
            return self._client._stream(chat_completion_stream_call, kwargs)
        return self._client._request(chat_completion_call, kwargs)

    def parse(
        self, *, response_format: type[T] | None = None, **kwargs: Unpack[ChatCompletionParseKwargs]
    ) -> ParsedChatCompletion[T]:
        """``create``, with the reply parsed into ``response_format`` (a pydantic model,
        dataclass or TypedDict), sent as its strict JSON schema (Structured Outputs).

        >>> class Event(pydantic.BaseModel):
        ...     name: str
        ...     day: str
        >>> completion = client.chat.completions.parse(  # doctest: +SKIP
        ...     model="m", messages=[{"role": "user", "content": "..."}], response_format=Event
        ... )
        >>> completion.choices[0].message.parsed  # doctest: +SKIP
        Event(name='Science fair', day='Friday')

        Calls of tools made with ``pydantic_function_tool`` come back with
        ``function.parsed_arguments``. A refusal sets ``message.refusal`` (``parsed`` stays
        ``None``); a reply cut off by the token limit raises ``LengthFinishReasonError``, a
        content-filter stop ``ContentFilterFinishReasonError``, invalid JSON
        ``OutputParseError`` (with the raw text).
        """
        params, spec = prepare_parse(response_format, kwargs)
        completion = self._client._request(chat_completion_call, params)
        return parse_chat_completion(completion, spec)

    def stream(
        self, *, response_format: type[T] | None = None, **kwargs: Unpack[ChatCompletionParseKwargs]
    ) -> ChatCompletionStreamManager[T]:
        """``parse`` as a stream: a context manager whose ``text_stream`` yields text as it
        arrives and whose ``get_final_completion()`` is the parsed completion.

        >>> with client.chat.completions.stream(  # doctest: +SKIP
        ...     model="m", messages=msgs, response_format=Event
        ... ) as stream:
        ...     for text in stream.text_stream:
        ...         print(text, end="")
        ...     event = stream.get_final_completion().choices[0].message.parsed
        """
        params, spec = prepare_parse(response_format, kwargs)
        stream = self._client._stream
        return ChatCompletionStreamManager(
            lambda: stream(chat_completion_stream_call, params), spec
        )

    def run_tools(
        self,
        *,
        tools: Sequence[ToolLike],
        max_rounds: int = 10,
        on_limit: OnLimit = "raise",
        **kwargs: Unpack[ToolLoopKwargs],
    ) -> ToolLoopResult:
        """Let the model call Python functions until it answers (see ``sdk.tools``).

        >>> def get_weather(city: str) -> str:
        ...     '''The current weather in a city.'''
        ...     return "sunny"
        >>> result = client.chat.completions.run_tools(  # doctest: +SKIP
        ...     model="m", messages=[{"role": "user", "content": "Paris?"}], tools=[get_weather]
        ... )
        >>> result.content, len(result.messages)  # doctest: +SKIP

        Each round: ``create`` with the tools, run the functions the model called (arguments
        validated; a failure is reported to the model as an error result), append its
        message and the ``tool`` results. After ``max_rounds`` rounds a model still calling
        tools raises ``ToolLoopLimitError``, or with ``on_limit="answer"`` is asked once more
        with ``tool_choice="none"`` to answer from the results it has.
        """
        loop = tool_loop(tools, kwargs, max_rounds=max_rounds, on_limit=on_limit)
        return ToolRunner(self.create).run(loop)


class Chat:
    def __init__(self, client: Client) -> None:
        self.completions = ChatCompletions(client)


class Completions:
    def __init__(self, client: Client) -> None:
        self._client = client

    @overload
    def create(
        self, *, stream: Literal[False] = False, **kwargs: Unpack[CompletionKwargs]
    ) -> Completion: ...
    @overload
    def create(
        self, *, stream: Literal[True], **kwargs: Unpack[CompletionKwargs]
    ) -> Stream[Completion]: ...
    def create(
        self, *, stream: bool = False, **kwargs: Unpack[CompletionKwargs]
    ) -> Completion | Stream[Completion]:
        """Continue a text prompt (``POST /completions``).

        >>> client.completions.create(prompt="Once upon a time", max_tokens=8)  # doctest: +SKIP
        """
        if stream:
            return self._client._stream(completion_stream_call, kwargs)
        return self._client._request(completion_call, kwargs)


class Embeddings:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, **kwargs: Unpack[EmbeddingKwargs]) -> CreateEmbeddingResponse:
        """Embed texts (``POST /embeddings``).

        >>> client.embeddings.create(input=["a", "b"]).data[0].embedding  # doctest: +SKIP
        """
        return self._client._request(embedding_call, kwargs)


class Models:
    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, **options: Unpack[RequestOptions]) -> ModelList:
        """The models the server offers (``GET /models``).

        >>> [m.id for m in client.models.list().data]  # doctest: +SKIP
        """
        return self._client._request(model_list_call, options)

    def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> Model:
        """One model by id (``GET /models/{model}``); ``NotFoundError`` if unknown."""
        return self._client._request(lambda rest: model_retrieve_call(model, rest), options)


# --- async --------------------------------------------------------------------------------


class AsyncChatCompletions:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @overload
    async def create(
        self, *, stream: Literal[False] = False, **kwargs: Unpack[ChatCompletionKwargs]
    ) -> ChatCompletion: ...
    @overload
    async def create(
        self, *, stream: Literal[True], **kwargs: Unpack[ChatCompletionKwargs]
    ) -> AsyncStream[ChatCompletionChunk]: ...
    async def create(
        self, *, stream: bool = False, **kwargs: Unpack[ChatCompletionKwargs]
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        """``ChatCompletions.create`` for ``AsyncClient``."""
        if stream:
            return await self._client._stream(chat_completion_stream_call, kwargs)
        return await self._client._request(chat_completion_call, kwargs)

    async def parse(
        self, *, response_format: type[T] | None = None, **kwargs: Unpack[ChatCompletionParseKwargs]
    ) -> ParsedChatCompletion[T]:
        """``ChatCompletions.parse`` for ``AsyncClient``."""
        params, spec = prepare_parse(response_format, kwargs)
        completion = await self._client._request(chat_completion_call, params)
        return parse_chat_completion(completion, spec)

    def stream(
        self, *, response_format: type[T] | None = None, **kwargs: Unpack[ChatCompletionParseKwargs]
    ) -> AsyncChatCompletionStreamManager[T]:
        """``ChatCompletions.stream`` for ``AsyncClient`` (``async with``)."""
        params, spec = prepare_parse(response_format, kwargs)
        stream = self._client._stream
        return AsyncChatCompletionStreamManager(
            lambda: stream(chat_completion_stream_call, params), spec
        )

    async def run_tools(
        self,
        *,
        tools: Sequence[ToolLike],
        max_rounds: int = 10,
        on_limit: OnLimit = "raise",
        **kwargs: Unpack[ToolLoopKwargs],
    ) -> ToolLoopResult:
        """``ChatCompletions.run_tools`` for ``AsyncClient``; ``async`` tools are awaited and
        the calls of one round run concurrently."""
        loop = tool_loop(tools, kwargs, max_rounds=max_rounds, on_limit=on_limit)
        return await AsyncToolRunner(self.create).run(loop)


class AsyncChat:
    def __init__(self, client: AsyncClient) -> None:
        self.completions = AsyncChatCompletions(client)


class AsyncCompletions:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @overload
    async def create(
        self, *, stream: Literal[False] = False, **kwargs: Unpack[CompletionKwargs]
    ) -> Completion: ...
    @overload
    async def create(
        self, *, stream: Literal[True], **kwargs: Unpack[CompletionKwargs]
    ) -> AsyncStream[Completion]: ...
    async def create(
        self, *, stream: bool = False, **kwargs: Unpack[CompletionKwargs]
    ) -> Completion | AsyncStream[Completion]:
        """``Completions.create`` for ``AsyncClient``."""
        if stream:
            return await self._client._stream(completion_stream_call, kwargs)
        return await self._client._request(completion_call, kwargs)


class AsyncEmbeddings:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(self, **kwargs: Unpack[EmbeddingKwargs]) -> CreateEmbeddingResponse:
        """``Embeddings.create`` for ``AsyncClient``."""
        return await self._client._request(embedding_call, kwargs)


class AsyncModels:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self, **options: Unpack[RequestOptions]) -> ModelList:
        """``Models.list`` for ``AsyncClient``."""
        return await self._client._request(model_list_call, options)

    async def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> Model:
        """``Models.retrieve`` for ``AsyncClient``."""
        return await self._client._request(lambda rest: model_retrieve_call(model, rest), options)
