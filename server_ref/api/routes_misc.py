"""Models, tokenization, health and metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from sdk.tokens import template_uses_tools
from sdk.types import DetokenizeResponse, Model, ModelCapabilities, ModelList, TokenizeResponse
from server_ref.api.errors import BadRequestError, ServiceUnavailableError
from server_ref.api.metrics import CONTENT_TYPE
from server_ref.api.openapi import errors, request_body
from server_ref.api.prompts import render_chat
from server_ref.api.schemas import (
    ModelPath,
    ServerDetokenizeRequest,
    ServerTokenizeRequest,
    parse_body,
)
from server_ref.api.state import ServerState, get_state

router = APIRouter()


class Health(BaseModel):
    status: Literal["ok"]


def _model_card(state: ServerState) -> Model:
    info = state.engine.model_info
    template = state.engine.tokenizer.chat_template
    tool_format = None  # no chat template: no chat, no tools
    if template is not None:
        tool_format = "template" if template_uses_tools(template) else "generic"
    capabilities = ModelCapabilities(
        input_modalities=["text"],
        output_modalities=["text"],
        tools=template is not None,
        tool_format=tool_format,
        response_formats=["text", "json_object", "json_schema"],
    )
    return Model(
        id=state.served_model_name,
        created=info.created,
        owned_by=info.owned_by,
        max_model_len=info.context_length,
        capabilities=capabilities,
    )


@router.get("/v1/models", tags=["openai"], response_model=ModelList)
async def list_models(request: Request) -> JSONResponse:
    body = ModelList(data=[_model_card(get_state(request))])
    return JSONResponse(body.model_dump(mode="json"))


@router.get(
    "/v1/models/{model_id:path}", tags=["openai"], response_model=Model, responses=errors(404)
)
async def retrieve_model(model_id: ModelPath, request: Request) -> JSONResponse:
    state = get_state(request)
    state.check_model(model_id)
    return JSONResponse(_model_card(state).model_dump(mode="json"))


@router.post(
    "/tokenize",
    tags=["extensions"],
    summary="Token ids of a prompt, or of chat messages rendered with the chat template",
    openapi_extra=request_body(ServerTokenizeRequest),
    response_model=None,
    responses={200: {"model": TokenizeResponse}, **errors(400, 404)},
)
async def tokenize(request: Request) -> JSONResponse:
    state = get_state(request)
    req = await parse_body(request, ServerTokenizeRequest)
    state.check_model(req.model)
    tokenizer = state.engine.tokenizer
    if req.messages is not None:
        add_generation_prompt = (
            True if req.add_generation_prompt is None else req.add_generation_prompt
        )
        tokens = render_chat(
            tokenizer,
            req.messages,
            tools=req.tools,
            tool_choice=req.tool_choice,
            parallel_tool_calls=req.parallel_tool_calls,
            add_generation_prompt=add_generation_prompt,
        )
    else:
        # Our tokenizer adds no BOS, so the nearest meaning of add_special_tokens is whether
        # special-token text in the prompt is parsed as special tokens (the default, as in
        # the completion endpoint).
        allow_special = True if req.add_special_tokens is None else req.add_special_tokens
        tokens = tokenizer.encode(req.prompt or "", allow_special=allow_special)
    body = TokenizeResponse(
        tokens=tokens, count=len(tokens), max_model_len=state.engine.model_info.context_length
    )
    return JSONResponse(body.model_dump(mode="json", exclude_none=True))


@router.post(
    "/detokenize",
    tags=["extensions"],
    summary="Text of a list of token ids",
    openapi_extra=request_body(ServerDetokenizeRequest),
    response_model=None,
    responses={200: {"model": DetokenizeResponse}, **errors(400, 404)},
)
async def detokenize(request: Request) -> JSONResponse:
    state = get_state(request)
    req = await parse_body(request, ServerDetokenizeRequest)
    state.check_model(req.model)
    state.check_token_ids(req.tokens, param="tokens")
    try:
        text = state.engine.tokenizer.decode(req.tokens)
    except (ValueError, KeyError, IndexError) as exc:
        raise BadRequestError(f"tokens: {exc}", param="tokens") from None
    return JSONResponse(DetokenizeResponse(prompt=text).model_dump(mode="json"))


@router.get(
    "/health",
    tags=["ops"],
    summary="200 when the model is loaded and the engine runs, else 503",
    response_model=Health,
)
async def health(request: Request) -> JSONResponse:
    if not get_state(request).engine.is_ready():
        raise ServiceUnavailableError("The model is loading or the engine is not running.")
    return JSONResponse({"status": "ok"})


@router.get(
    "/metrics",
    tags=["ops"],
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    return Response(get_state(request).metrics.render(), media_type=CONTENT_TYPE)
