"""``POST /v1/embeddings``: OpenAI's request and response, served by ``engine.embedder``.

The body is validated by ``ServerEmbeddingRequest``, stricter than the SDK's model it
extends: unknown fields are refused rather than ignored (unlike the chat routes, which must
take the extras clients such as LangChain add). An embeddings request has five fields, every
client we know sends only those, and the extensions other servers accept
(``truncate_prompt_tokens``, ``normalize``) would silently change the vectors if ignored.

The embedder checks the inputs themselves (empty, too many, token ids, ``dimensions``) and
raises ``embedding_types`` errors, mapped here in one place::

    EmbeddingInputError      -> 400 invalid_request_error (its param and code)
    EmbedderOverloadedError  -> 429 rate_limit_exceeded, Retry-After
    EmbedderClosedError      -> 503
    anything else            -> 500 (the middleware's last resort)

Inputs longer than the model's limit (256 tokens for all-MiniLM-L6-v2) are truncated by
default, as sentence-transformers does (see ``engine.embedder``); ``"truncate": false`` makes
them a 400 ``context_length_exceeded``, as OpenAI answers. ``usage.prompt_tokens`` counts the
tokens embedded, ``[CLS]`` and ``[SEP]`` included.

The body is written ``ROWS_PER_CHUNK`` vectors at a time, the event loop getting its turn
between chunks. JSON-encoding floats holds the GIL: 2,048 vectors of 384 floats took 1.1 s in
one piece on the (shared) development VM, during which no chat stream is sent a token and the
engine thread cannot run, against 7 ms (at most 15) per chunk of 16. A body of one chunk goes
out whole, with a Content-Length.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from starlette.responses import Response, StreamingResponse

from sdk.types import CreateEmbeddingResponse, EmbeddingRequest, PromptInput
from server_ref.api.errors import (
    BadRequestError,
    OverloadedError,
    ServiceUnavailableError,
)
from server_ref.api.openapi import errors, request_body
from server_ref.api.schemas import INTEGRAL, SERVER_CONFIG, parse_body
from server_ref.api.state import get_state
from server_ref.api.tracing import trace_embeddings, traced
from server_ref.engine.embedding_types import (
    EmbedderClosedError,
    EmbedderOverloadedError,
    EmbeddingInputError,
    EmbeddingResult,
    split_inputs,
)

router = APIRouter(tags=["openai"])

MAX_USER_CHARS = 256
ROWS_PER_CHUNK = 16


class ServerEmbeddingRequest(EmbeddingRequest):
    """``EmbeddingRequest`` with the server's checks: no unknown fields, positive
    ``dimensions``, one clear message for an ``input`` of the wrong shape."""

    model_config = ConfigDict(**{**SERVER_CONFIG, "extra": "forbid"})

    input: PromptInput
    dimensions: Annotated[int, Field(ge=1), INTEGRAL] | None = None
    user: Annotated[str, Field(max_length=MAX_USER_CHARS)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_fields(cls, data: Any) -> Any:
        unknown = sorted(set(data) - set(cls.model_fields)) if isinstance(data, dict) else []
        if unknown:
            raise PydanticCustomError(
                "unknown_field",
                "unknown field {names} (this endpoint takes {known})",
                {"names": ", ".join(map(repr, unknown)), "known": ", ".join(cls.model_fields)},
            )
        return data

    @field_validator("input", mode="wrap")
    @classmethod
    def _one_message_for_input(cls, value: Any, handler: Any) -> Any:
        # pydantic would list why each of the four union members failed, for every item
        try:
            return handler(value)
        except ValueError:
            raise PydanticCustomError(
                "input_type",
                "must be a string, a list of strings, a list of token ids (integers) or a "
                "list of such lists",
            ) from None


@router.post(
    "/v1/embeddings",
    summary="Embeddings of texts or token ids",
    openapi_extra=request_body(ServerEmbeddingRequest),
    response_model=None,
    responses={200: {"model": CreateEmbeddingResponse}, **errors(400, 404, 429)},
)
@traced("embeddings")
async def create_embeddings(request: Request) -> Response:
    state = get_state(request)
    req = await parse_body(request, ServerEmbeddingRequest)
    embedder = state.check_embedding_model(req.model)
    try:
        result = await embedder.embed(
            split_inputs(req.input), dimensions=req.dimensions, truncate=req.truncate is not False
        )
    except EmbeddingInputError as exc:
        raise BadRequestError(exc.message, param=exc.param, code=exc.code) from None
    except EmbedderOverloadedError as exc:
        retry_after = max(exc.retry_after, state.retry_after)
        raise OverloadedError(exc.message, retry_after=retry_after) from None
    except EmbedderClosedError as exc:
        raise ServiceUnavailableError(exc.message) from None
    trace_embeddings(
        request,
        request_model=req.model,
        response_model=embedder.info.id,
        input_tokens=result.prompt_tokens,
    )
    chunks = body_chunks(result, req.encoding_format, embedder.info.id)
    if len(result.token_counts) <= ROWS_PER_CHUNK:
        return Response(b"".join(chunks), media_type="application/json")
    return StreamingResponse(_taking_turns(chunks), media_type="application/json")


def body_chunks(
    result: EmbeddingResult, encoding_format: str | None, model: str
) -> Iterator[bytes]:
    """The JSON body of ``CreateEmbeddingResponse`` (built as data: the model decodes base64
    when it parses, so it cannot carry that form out), ``ROWS_PER_CHUNK`` vectors a piece;
    joined, the bytes Starlette's ``JSONResponse`` would send."""
    parts = [b'{"object":"list","data":[']
    for i, vector in enumerate(result.encoded(encoding_format)):
        item = _json({"object": "embedding", "index": i, "embedding": vector})
        parts.append(b"," + item if i else item)
        if (i + 1) % ROWS_PER_CHUNK == 0:
            yield b"".join(parts)
            parts = []
    tokens = result.prompt_tokens
    tail = _json({"model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
    parts.append(b"]," + tail[1:])
    yield b"".join(parts)


async def _taking_turns(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(0)  # other requests' turn on the loop, and the GIL's


def _json(value: Any) -> bytes:
    # Starlette's JSONResponse settings
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
