"""Server-side request models: ``sdk.types`` plus the checks a server must make.

The wire contract lives in ``sdk.types``; here each request model is subclassed to add ranges
(``0 <= temperature <= 2``, ``n >= 1`` ...) and to refuse NaN/Infinity. Unknown fields are
accepted and ignored: clients such as LangChain always send a few, and servers that reject
them break those clients (a 422 for ``stream_options`` in openai/openai-agents-python#442, a
400 in vercel/ai#1578). The exceptions are the few in ``UNSUPPORTED_FIELDS`` whose silent
omission would change what the client gets (the legacy functions API, audio output): those
are a 400.

``parse_body`` is the one place a request body becomes a model: UTF-8 check, JSON parse,
validation, each failure a 400 naming the problem.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from sdk.types import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    DetokenizeRequest,
    PromptInput,
    SamplingFields,
    TokenizeRequest,
)
from server_ref.api.errors import BadRequestError, validation_error

MAX_N = 128  # choices per request; each is a full engine request
MAX_LOGPROBS = 20  # as vLLM's --max-logprobs default and OpenAI's top_logprobs bound
MAX_STOP = 16

SERVER_CONFIG = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, defer_build=True)

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
Bias = Annotated[float, Field(ge=-100.0, le=100.0)]
PositiveInt = Annotated[int, Field(ge=1)]
TokenId = Annotated[int, Field(ge=0)]
StopString = Annotated[str, Field(min_length=1)]


class ServerSamplingFields(SamplingFields):
    """Range checks for the sampling fields. Listed first in the bases so these win."""

    model_config = SERVER_CONFIG

    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=-1)] | None = None  # -1 and 0 both mean "off"
    min_p: Unit | None = None
    seed: Annotated[int, Field(ge=-(2**63), lt=2**64)] | None = None
    max_tokens: PositiveInt | None = None
    stop: StopString | Annotated[list[StopString], Field(max_length=MAX_STOP)] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Bias] | None = None
    stop_token_ids: list[TokenId] | None = None


class ServerChatCompletionRequest(ServerSamplingFields, ChatCompletionRequest):
    model_config = SERVER_CONFIG

    messages: list[ChatMessage] = Field(strict=False, min_length=1)
    max_completion_tokens: PositiveInt | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None


class ServerCompletionRequest(ServerSamplingFields, CompletionRequest):
    model_config = SERVER_CONFIG

    prompt: PromptInput
    logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None


class ServerTokenizeRequest(TokenizeRequest):
    model_config = SERVER_CONFIG


class ServerDetokenizeRequest(DetokenizeRequest):
    model_config = SERVER_CONFIG

    tokens: list[TokenId]


# Fields we do not implement and must not silently drop: the client would get plain text
# where it asked for something else. The legacy ``functions`` API (deprecated by OpenAI in
# favour of tools) is refused rather than mapped: its replies have another shape
# (``message.function_call``, finish reason "function_call") that clients of it expect.
UNSUPPORTED_FIELDS: dict[str, str] = {
    "functions": "the deprecated functions API is not supported; send tools instead",
    "function_call": "the deprecated functions API is not supported; send tool_choice instead",
    "prompt_logprobs": "prompt_logprobs is not supported by this server",
    "audio": "audio output is not supported: this model writes text only",
    "modalities": 'this model writes text only (modalities: ["text"])',
    "web_search_options": "web search is not supported by this server",
}


def _harmless(name: str, value: Any) -> bool:
    """Values of an unsupported field that ask for nothing (``functions: []``, ``auto``)."""
    if value is None or value == [] or value == {}:
        return True
    if name == "function_call" and value in ("none", "auto"):
        return True
    return name == "modalities" and value == ["text"]


def reject_unsupported(req: BaseModel) -> None:
    """400 for unimplemented fields that matter (see ``UNSUPPORTED_FIELDS``)."""
    for name, value in req.model_dump(exclude_unset=True).items():  # typed fields too
        reason = UNSUPPORTED_FIELDS.get(name)
        if reason is not None and not _harmless(name, value):
            raise BadRequestError(f"'{name}': {reason}.", param=name, code="unsupported_parameter")


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
