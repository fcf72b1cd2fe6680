"""The OpenAPI document, saying what the server really does.

FastAPI builds the paths from the routes; this module adds what it cannot see, so that
generated clients and API fuzzers agree with the server:

* Request bodies. The OpenAI routes read and validate the body themselves (to answer 400 in
  OpenAI's shape for every kind of bad body, instead of FastAPI's 422), so a route declares
  its model with ``request_body(Model)`` and the model's JSON schema (with every check the
  server makes, see ``schemas.py``) goes into ``components.schemas``.
* Responses. Every error is ``ErrorBody`` (OpenAI's shape). A route lists the errors it
  raises itself (``errors(400, 404)``); ``install_openapi`` adds the middlewares' ones: 401
  where the API key guards (with the ``bearer`` security scheme, only when a key is set), 413
  on every request body, and 500 and 503 everywhere (a bug; the model loading or the server
  draining). FastAPI's 422 is removed: this server never sends it.
* Limits of the loaded model. Schema nodes marked ``x-server-limit`` get this app's numbers:
  ``max_tokens`` at most the context window less one prompt token, token ids inside the
  vocabulary, the served model names as an ``enum`` (the embedding model's too on the routes
  both models share: model cards, tokenizers, ``/tokenize``, ``/detokenize``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict

from server_ref.api.auth import is_protected
from server_ref.api.sampling import TOKEN_ID_KEY
from server_ref.api.schemas import LIMIT
from server_ref.api.state import ServerState

_REF = "#/components/schemas/{model}"
_declared: dict[str, type[BaseModel]] = {}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str
    type: str  # invalid_request_error, authentication_error, rate_limit_error, ...
    param: str | None  # the offending field, e.g. "messages[0].role"
    code: str | None  # e.g. context_length_exceeded, model_not_found, rate_limit_exceeded


class ErrorBody(BaseModel):
    """The body of every error response, and of a stream's error event (OpenAI's shape)."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


_RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
_ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "Invalid request (`param` names the field): a parameter or the body breaks this "
        "document's schema, or a rule no schema can state: the prompt and max_tokens must fit "
        "the context window (code context_length_exceeded), and the model's chat template may "
        "refuse the messages.",
        {},
    ),
    401: (
        "Missing or wrong API key (send `Authorization: Bearer <key>`).",
        {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    ),
    404: (
        "No such model (code model_not_found), or its tokenizer cannot be exported (code "
        "tokenizer_not_exportable).",
        {},
    ),
    413: ("The request body is over the server's limit (code request_too_large).", {}),
    429: (
        "The engine's queue is full (code rate_limit_exceeded); retry after Retry-After.",
        {"Retry-After": {**_RETRY_AFTER, "required": True}},
    ),
    500: ("A bug in the server or a failure of the inference engine.", {}),
    503: (
        "Not ready: the model is still loading, the engine has stopped, or the server is "
        "shutting down. Retry after Retry-After when it is sent.",
        {"Retry-After": _RETRY_AFTER},
    ),
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the errors a route raises itself, e.g. ``errors(400, 404)``."""
    return {status: _error_response(status) for status in statuses}


def _error_response(status: int) -> dict[str, Any]:
    description, headers = _ERRORS[status]
    schema = {"$ref": _REF.format(model=ErrorBody.__name__)}
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body is ``model``."""
    _declared[model.__name__] = model
    schema = {"$ref": _REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def json_or_stream(model: type[BaseModel], chunk: type[BaseModel]) -> dict[int | str, Any]:
    """The 200 of a generation route: ``model`` as JSON, or with ``stream: true`` an SSE
    stream of ``chunk`` events.

    In OpenAPI 3.1 the ``schema`` of ``text/event-stream`` describes one event, an object
    with the event's fields (3.2 calls it ``itemSchema``); ``data`` holds the chunk as JSON,
    an error (``ErrorBody``) after the stream started, or the final ``[DONE]``.
    """
    _declared[chunk.__name__] = chunk
    chunk_or_error = [{"$ref": _REF.format(model=m.__name__)} for m in (chunk, ErrorBody)]
    data = {
        "anyOf": [
            {"const": "[DONE]"},
            {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"anyOf": chunk_or_error},
            },
        ]
    }
    event = {"type": "object", "required": ["data"], "properties": {"data": data}}
    return {
        200: {
            "model": model,
            "description": f"{model.__name__}; with `stream: true` an event stream of "
            f"{chunk.__name__} objects ending with `data: [DONE]`.",
            "content": {"text/event-stream": {"schema": event}},
        }
    }


def install_openapi(app: FastAPI, *, api_key: bool) -> None:
    """Make ``app.openapi()`` return the document described in the module docstring."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components: dict[str, Any] = document.setdefault("components", {})
        schemas: dict[str, Any] = components.setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        models: list[type[BaseModel]] = [*_declared.values(), ErrorBody]
        for model in models:
            schema = model.model_json_schema(ref_template=_REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        for path, item in document.get("paths", {}).items():
            for operation in item.values():
                _add_middleware_responses(path, operation, api_key=api_key)
        if api_key:
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        _fill_limits(document, app.state.server)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _add_middleware_responses(path: str, operation: dict[str, Any], *, api_key: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("422", None)
    statuses = [500, 503]
    if "requestBody" in operation:
        statuses.append(413)
    if api_key and is_protected(path):
        statuses.append(401)
        operation["security"] = [{"bearer": []}]
    for status in statuses:
        responses.setdefault(str(status), _error_response(status))
    operation["responses"] = dict(sorted(responses.items()))


def _fill_limits(node: Any, state: ServerState) -> None:
    """Replace each ``x-server-limit`` marker by this app's number, pattern or enum."""
    if isinstance(node, list):
        for item in node:
            _fill_limits(item, state)
    if not isinstance(node, dict):
        return
    kind = node.pop(LIMIT, None)
    info = state.engine.model_info
    vocab = info.vocab_size
    if kind == "completion_room":
        node["maximum"] = info.context_length - 1  # the prompt has at least one token
    elif kind == "vocab_id" and vocab:
        node["maximum"] = vocab - 1
    elif kind == "vocab_key":
        node["pattern"] = decimal_below(vocab) if vocab else f"^(?:{TOKEN_ID_KEY.pattern})$"
    elif kind in ("model_name", "any_model_name"):
        names = [state.served_model_name, info.id]
        if kind == "any_model_name" and state.embedder is not None:
            names.append(state.embedder.info.id)
        node["enum"] = list(dict.fromkeys(names))
    for value in node.values():
        _fill_limits(value, state)


def decimal_below(n: int) -> str:
    """A regex for the numbers ``0 .. n-1`` in decimal without leading zeros.

    >>> decimal_below(264)
    '^(?:0|[1-9]|[1-9][0-9]|1[0-9]{2}|2[0-5][0-9]|26[0-2]|263)$'
    """
    top = str(n - 1)
    alternatives = ["0"]
    for length in range(1, len(top)):
        alternatives.append("[1-9]" + _any_digits(length - 1))
    for i, digit in enumerate(top):
        low, high = (1 if i == 0 else 0), int(digit) - 1
        if high >= low:
            span = str(low) if low == high else f"[{low}-{high}]"
            alternatives.append(top[:i] + span + _any_digits(len(top) - i - 1))
    alternatives.append(top)
    unique = list(dict.fromkeys(alternatives))
    return "^(?:" + "|".join(unique) + ")$"


def _any_digits(count: int) -> str:
    return "" if count == 0 else "[0-9]" if count == 1 else f"[0-9]{{{count}}}"
