"""Building requests: endpoint descriptions, parameter validation, URL, headers, body."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from .._exceptions import InvalidRequestParamsError
from ..types import (
    APIObject,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    CreateEmbeddingResponse,
    DetokenizeRequest,
    DetokenizeResponse,
    EmbeddingRequest,
    Model,
    ModelList,
    RequestModel,
    TokenizeRequest,
    TokenizeResponse,
)
from ..types.llamacpp import (
    ApplyTemplateRequest,
    ContentTokenizeRequest,
    ContentTokens,
    ExtrasTokenizeRequest,
    ExtrasTokens,
    ServerProps,
    TemplatePrompt,
)
from .accumulate import Accumulator, ChatCompletionAccumulator, CompletionAccumulator
from .options import ClientConfig, RequestOptions, split_options, to_timeout

__all__ = [
    "IDEMPOTENCY_HEADER",
    "RETRY_COUNT_HEADER",
    "APICall",
    "apply_template_call",
    "build_request",
    "chat_completion_call",
    "chat_completion_stream_call",
    "completion_call",
    "completion_stream_call",
    "content_tokenize_call",
    "detokenize_call",
    "embedding_call",
    "extras_tokenize_call",
    "model_list_call",
    "model_retrieve_call",
    "props_call",
    "tokenize_call",
]

T = TypeVar("T", bound=APIObject)

IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRY_COUNT_HEADER = "X-Retry-Count"


@dataclass(frozen=True)
class APICall(Generic[T]):
    """One endpoint call, described as data.

    ``parse`` validates the JSON answer (or, for streams, one chunk) into ``T``;
    ``at_root`` puts ``path`` under the server root instead of ``base_url`` (``/tokenize``).
    """

    method: str
    path: str
    parse: Callable[[Any], T]
    body: Mapping[str, object] | None = None
    at_root: bool = False
    accumulator: Callable[[], Accumulator[T, Any]] | None = None  # set for streaming calls

    @property
    def stream(self) -> bool:
        return self.accumulator is not None

    @property
    def describe(self) -> str:
        return f"{self.method} {self.path}"


def _body(
    model: type[RequestModel], what: str, params: Mapping[str, Any], **fixed: Any
) -> dict[str, Any]:
    """Validate call parameters with the wire model; the fields a caller set, as JSON."""
    try:
        request = model.model_validate({**params, **fixed})
    except pydantic.ValidationError as exc:
        raise InvalidRequestParamsError(
            f"invalid parameters for {what}: {exc}", errors=exc.errors()
        ) from None
    return request.model_dump(mode="json", exclude_unset=True)


def chat_completion_call(
    kwargs: Mapping[str, Any],
) -> tuple[APICall[ChatCompletion], RequestOptions]:
    params, options = split_options(kwargs)
    body = _body(ChatCompletionRequest, "POST /chat/completions", params)
    return APICall("POST", "/chat/completions", ChatCompletion.model_validate, body), options


def chat_completion_stream_call(
    kwargs: Mapping[str, Any],
) -> tuple[APICall[ChatCompletionChunk], RequestOptions]:
    params, options = split_options(kwargs)
    body = _body(ChatCompletionRequest, "POST /chat/completions", params, stream=True)
    parse = ChatCompletionChunk.model_validate
    return APICall(
        "POST", "/chat/completions", parse, body, accumulator=ChatCompletionAccumulator
    ), options


def completion_call(kwargs: Mapping[str, Any]) -> tuple[APICall[Completion], RequestOptions]:
    params, options = split_options(kwargs)
    body = _body(CompletionRequest, "POST /completions", params)
    return APICall("POST", "/completions", Completion.model_validate, body), options


def completion_stream_call(kwargs: Mapping[str, Any]) -> tuple[APICall[Completion], RequestOptions]:
    params, options = split_options(kwargs)
    body = _body(CompletionRequest, "POST /completions", params, stream=True)
    parse = Completion.model_validate
    return APICall("POST", "/completions", parse, body, accumulator=CompletionAccumulator), options


def embedding_call(
    kwargs: Mapping[str, Any],
) -> tuple[APICall[CreateEmbeddingResponse], RequestOptions]:
    params, options = split_options(kwargs)
    body = _body(EmbeddingRequest, "POST /embeddings", params)
    # Unless told otherwise, ask for base64 (as openai-python does): ~3.7x fewer bytes than
    # JSON floats, the same float32 values; parsing decodes it (``types.Embedding``).
    body.setdefault("encoding_format", "base64")
    return APICall("POST", "/embeddings", CreateEmbeddingResponse.model_validate, body), options


def model_list_call(kwargs: Mapping[str, Any]) -> tuple[APICall[ModelList], RequestOptions]:
    _, options = split_options(kwargs)
    return APICall("GET", "/models", ModelList.model_validate), options


def model_retrieve_call(
    model: str, kwargs: Mapping[str, Any]
) -> tuple[APICall[Model], RequestOptions]:
    if not isinstance(model, str) or not model:
        raise InvalidRequestParamsError(f"model must be a non-empty string, got {model!r}")
    _, options = split_options(kwargs)
    # Ids may contain "/" (org/name); quoting keeps them one path segment.
    return APICall("GET", f"/models/{quote(model, safe='')}", Model.model_validate), options


def tokenize_call(kwargs: Mapping[str, Any]) -> tuple[APICall[TokenizeResponse], RequestOptions]:
    params, options = split_options(kwargs)
    body = _body(TokenizeRequest, "POST /tokenize", params)
    call = APICall("POST", "/tokenize", TokenizeResponse.model_validate, body, at_root=True)
    return call, options


# llama.cpp's servers' own extensions (sdk.types.llamacpp), at the server root like /tokenize


def apply_template_call(params: Mapping[str, Any]) -> APICall[TemplatePrompt]:
    body = _body(ApplyTemplateRequest, "POST /apply-template", params)
    return APICall("POST", "/apply-template", TemplatePrompt.model_validate, body, at_root=True)


def content_tokenize_call(params: Mapping[str, Any]) -> APICall[ContentTokens]:
    # every field is sent: the defaults are llama.cpp's today, but the count must not depend
    # on what an older or newer server assumes
    body = ContentTokenizeRequest.model_validate(params).model_dump(mode="json", exclude_none=True)
    return APICall("POST", "/tokenize", ContentTokens.model_validate, body, at_root=True)


def extras_tokenize_call(params: Mapping[str, Any]) -> APICall[ExtrasTokens]:
    body = _body(ExtrasTokenizeRequest, "POST /extras/tokenize", params)
    return APICall("POST", "/extras/tokenize", ExtrasTokens.model_validate, body, at_root=True)


def props_call() -> APICall[ServerProps]:
    return APICall("GET", "/props", ServerProps.model_validate, at_root=True)


def detokenize_call(
    tokens: object, kwargs: Mapping[str, Any]
) -> tuple[APICall[DetokenizeResponse], RequestOptions]:
    params, options = split_options(kwargs)
    # A tuple or array of ids is fine; the strict model then checks each one is an int.
    ids = list(tokens) if isinstance(tokens, list | tuple | range) else tokens
    body = _body(DetokenizeRequest, "POST /detokenize", params, tokens=ids)
    call = APICall("POST", "/detokenize", DetokenizeResponse.model_validate, body, at_root=True)
    return call, options


def build_request(
    config: ClientConfig,
    call: APICall[Any],
    options: RequestOptions,
    *,
    retries_taken: int,
    idempotency_key: str | None,
) -> httpx.Request:
    """The ``httpx.Request`` for one attempt of ``call`` (as data; nothing is sent here)."""
    base = config.root_url if call.at_root else config.base_url
    url = base.copy_with(path=base.path.rstrip("/") + call.path)
    if "extra_query" in options:
        url = url.copy_merge_params(dict(options["extra_query"]))
    headers = {
        "Accept": "text/event-stream" if call.stream else "application/json",
        "User-Agent": config.user_agent,
        RETRY_COUNT_HEADER: str(retries_taken),
    }
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    if idempotency_key is not None:
        headers[IDEMPOTENCY_HEADER] = idempotency_key
    content = None
    if call.body is not None:
        body = {**call.body, **options.get("extra_body", {})}
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers["Content-Type"] = "application/json"
    headers.update(config.headers)
    headers.update(options.get("extra_headers", {}))
    timeout = to_timeout(options["timeout"]) if "timeout" in options else config.timeout
    # httpx's transports read the timeout from this extension (Client.build_request sets it
    # the same way); the client-level default of an injected httpx.Client does not apply.
    return httpx.Request(
        call.method,
        url,
        headers=headers,
        content=content,
        extensions={"timeout": timeout.as_dict()},
    )
