"""Server-side request models: ``sdk.types`` plus the checks a server must make.

The wire contract lives in ``sdk.types``; here each request model is subclassed to add ranges
(``0 <= temperature <= 2``, ``n >= 1`` ...) and to refuse NaN/Infinity. Unknown fields are
accepted and ignored: clients such as LangChain always send a few, and servers that reject
them break those clients (a 422 for ``stream_options`` in openai/openai-agents-python#442, a
400 in vercel/ai#1578). The exceptions are the fields in ``unsupported.py`` whose silent
omission would change what the client gets (the legacy functions API, audio output): those
are a 400.

``parse_body`` is the one place a request body becomes a model: UTF-8 check, JSON parse,
validation, each failure a 400 naming the problem.

The models' JSON schemas are the request schemas of the OpenAPI document, so every check
made here or in a route is also written into them (ranges, ``minItems``, the unsupported
fields' accepted values, the rules between fields as ``if``/``then`` and ``oneOf``): a
schema-valid request is accepted and a schema-invalid one refused. Limits that depend on
the loaded model carry an ``x-server-limit`` marker that ``openapi.py`` fills in per app.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.config import JsonDict
from starlette.requests import Request

from sdk.types import (
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    DetokenizeRequest,
    RefusalContentPart,
    SamplingFields,
    TextContentPart,
    TokenizeRequest,
)
from server_ref.api import unsupported
from server_ref.api.errors import BadRequestError, validation_error

MAX_N = 128  # choices per request; each is a full engine request
MAX_LOGPROBS = 20  # as vLLM's --max-logprobs default and OpenAI's top_logprobs bound
MAX_STOP = 16

SERVER_CONFIG = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, defer_build=True)

# Markers for limits of the loaded model, filled in by openapi.py (validation checks them in
# the routes, where the engine is known): the room a completion can have in the context
# window, the vocabulary, the served model names.
LIMIT = "x-server-limit"
COMPLETION_ROOM = {LIMIT: "completion_room"}
VOCAB_ID = {LIMIT: "vocab_id"}
VOCAB_KEY = {LIMIT: "vocab_key"}
MODEL_NAME = {LIMIT: "model_name"}  # the chat model's names
ANY_MODEL_NAME = {LIMIT: "any_model_name"}  # those and the embedding model's id


def _integral(value: Any) -> Any:
    """2.0 -> 2: JSON Schema's integers include 2.0 (not true), and some clients write that."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


INTEGRAL = BeforeValidator(_integral)  # last in Annotated[...], after the constraints
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
Bias = Annotated[float, Field(ge=-100.0, le=100.0)]
MaxTokens = Annotated[int, Field(ge=1, json_schema_extra=COMPLETION_ROOM), INTEGRAL]
Logprobs = Annotated[int, Field(ge=0, le=MAX_LOGPROBS), INTEGRAL]
TokenId = Annotated[int, Field(ge=0), INTEGRAL]
VocabTokenId = Annotated[int, Field(ge=0, json_schema_extra=VOCAB_ID), INTEGRAL]  # 400 outside
TokenIdKey = Annotated[str, Field(json_schema_extra=VOCAB_KEY)]  # checked by sampling.py
ModelName = Annotated[str, Field(json_schema_extra=MODEL_NAME)]  # 404 for another name
# routes both models share (cards, tokenizers): any served model, 404 for another name
AnyModelName = Annotated[str, Field(json_schema_extra=ANY_MODEL_NAME)]
ModelPath = Annotated[str, Path(json_schema_extra=ANY_MODEL_NAME)]  # the same in {model_id:path}
StopString = Annotated[str, Field(min_length=1)]
NonEmptyText = Annotated[str, Field(min_length=1)]
NonEmptyIds = Annotated[list[VocabTokenId], Field(min_length=1)]
# /v1/completions' four prompt forms, none of them empty (nothing to continue from)
PromptForms = (
    NonEmptyText
    | Annotated[list[NonEmptyText], Field(min_length=1)]
    | NonEmptyIds
    | Annotated[list[NonEmptyIds], Field(min_length=1)]
)


def reject_unsupported(req: BaseModel, table: dict[str, unsupported.Unsupported]) -> None:
    """400 for a field of ``req`` (declared or extra) that ``table`` refuses."""
    refused = unsupported.first_refused(req.model_dump(exclude_unset=True), table)
    if refused is not None:
        name, message = refused
        raise BadRequestError(message, param=name, code="unsupported_parameter")


def _if_set(field: str, value: dict[str, Any], then: dict[str, Any]) -> JsonDict:
    """JSON schema: when ``field`` is present and matches ``value``, ``then`` holds."""
    return {"if": {"required": [field], "properties": {field: value}}, "then": then}


class ServerSamplingFields(SamplingFields):
    """Range checks for the sampling fields. Listed first in the bases so these win."""

    model_config = SERVER_CONFIG

    model: ModelName | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=-1), INTEGRAL] | None = None  # -1 and 0 both mean "off"
    min_p: Unit | None = None
    seed: Annotated[int, Field(ge=-(2**63), lt=2**64), INTEGRAL] | None = None
    max_tokens: MaxTokens | None = None
    stop: StopString | Annotated[list[StopString], Field(max_length=MAX_STOP)] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N), INTEGRAL] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[TokenIdKey, Bias] | None = None
    stop_token_ids: list[TokenId] | None = None  # ids no output can have are harmless


def _message_rules(schema: JsonDict) -> None:
    unsupported.document(schema, unsupported.MESSAGE)


class ServerChatMessage(ChatMessage):
    """A message this text-only model can read: text content (a string, text or refusal
    parts), function tool calls and tool results; no legacy function call or audio. Anything else is
    a 400 rather than silently dropped (a media part by ``refuse_media_parts``)."""

    model_config = SERVER_CONFIG | ConfigDict(json_schema_extra=_message_rules)

    content: str | list[TextContentPart | RefusalContentPart] | None = None  # type: ignore[assignment]
    tool_calls: list[ChatCompletionMessageFunctionToolCall] | None = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _text_only(self) -> ServerChatMessage:
        refused = unsupported.first_refused(
            self.model_dump(exclude_unset=True), unsupported.MESSAGE
        )
        if refused is not None:
            raise ValueError(refused[1])
        return self


# what a text-only model cannot read
_MEDIA_PARTS = {"image_url": " (an image)", "input_audio": " (audio)", "file": " (a file)"}


def refuse_media_parts(data: Any) -> Any:
    """400 naming the first content part of ``data["messages"]`` this text-only model cannot
    read (an image, audio, a file, or a kind it does not know): dropping it would answer
    another question. Run before validation, so the error names the part, not the union."""
    messages = data.get("messages") if isinstance(data, dict) else None
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else ()):
            kind = part.get("type") if isinstance(part, dict) else None
            if isinstance(kind, str) and kind not in ("text", "refusal"):
                what = _MEDIA_PARTS.get(kind, "")
                raise BadRequestError(
                    f"messages[{i}].content[{j}]: this model accepts text only; a content part "
                    f"of type {kind!r}{what} cannot be read.",
                    param=f"messages[{i}].content[{j}]",
                    code="unsupported_content_type",
                )
    return data


Messages = Annotated[list[ServerChatMessage], Field(strict=False, min_length=1)]


def _chat_rules(schema: JsonDict) -> None:
    unsupported.document(schema, unsupported.CHAT)
    logprobs_on = {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}}
    schema["allOf"] = [_if_set("top_logprobs", {"type": "integer"}, logprobs_on)]


class ServerChatCompletionRequest(ServerSamplingFields, ChatCompletionRequest):
    """Refused beyond the field types: ``top_logprobs`` without ``logprobs: true``."""

    model_config = SERVER_CONFIG | ConfigDict(json_schema_extra=_chat_rules)

    messages: Messages  # type: ignore[assignment]
    max_completion_tokens: MaxTokens | None = None
    top_logprobs: Logprobs | None = None

    _media = model_validator(mode="before")(refuse_media_parts)


def _completion_rules(schema: JsonDict) -> None:
    unsupported.document(schema, unsupported.COMPLETION)
    no_logprobs = {"properties": {"logprobs": {"type": "null"}}}
    schema["allOf"] = [_if_set("echo", {"const": True}, no_logprobs)]


class ServerCompletionRequest(ServerSamplingFields, CompletionRequest):
    """Refused beyond the field types: ``echo`` with ``logprobs`` (that asks for the prompt's
    logprobs, which the engine does not compute)."""

    model_config = SERVER_CONFIG | ConfigDict(json_schema_extra=_completion_rules)

    prompt: PromptForms
    logprobs: Logprobs | None = None
    best_of: Annotated[int, INTEGRAL] | None = None


def _tokenize_rules(schema: JsonDict) -> None:
    schema["oneOf"] = [
        {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
        {"required": ["messages"], "properties": {"messages": {"type": "array"}}},
    ]


class ServerTokenizeRequest(TokenizeRequest):
    """Exactly one of ``prompt`` and ``messages`` (the other absent or null)."""

    model_config = SERVER_CONFIG | ConfigDict(json_schema_extra=_tokenize_rules)

    model: AnyModelName | None = None
    messages: Messages | None = None  # type: ignore[assignment]

    _media = model_validator(mode="before")(refuse_media_parts)


class ServerDetokenizeRequest(DetokenizeRequest):
    model_config = SERVER_CONFIG

    model: AnyModelName | None = None
    tokens: list[VocabTokenId]


M = TypeVar("M", bound=BaseModel)


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it.

    NaN and Infinity literals are let through here (Python's ``json`` accepts them) so that
    validation can name the field that carries them.
    """
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(
            f"Request body is not valid UTF-8 (byte offset {exc.start})."
        ) from None
    if not text.strip():
        raise BadRequestError("Request body is empty; expected a JSON object.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequestError(
            f"Request body is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})."
        ) from None
    if not isinstance(data, dict):
        raise BadRequestError("Request body must be a JSON object.")
    return data


def parse_model(model: type[M], data: dict[str, Any]) -> M:
    """Validate ``data`` as ``model``; a ``ValidationError`` becomes a 400 naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, data) from None


async def parse_body(request: Request, model: type[M]) -> M:
    """Read, decode and validate the request body in one step."""
    return parse_model(model, await read_json(request))
