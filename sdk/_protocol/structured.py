"""Structured outputs: Python types in, a strict JSON schema out, typed results back.

``parse(response_format=Model)`` sends ``{"type": "json_schema", "json_schema": {"name":
"Model", "schema": <strict schema>, "strict": true}}`` and validates the reply into a
``Model``; tools built with ``pydantic_function_tool(Model)`` get their call arguments
validated the same way. All of it is pure: ``parse_call`` describes the request and
``parse_chat_completion`` turns the ``ChatCompletion`` into a ``ParsedChatCompletion``.

Failures are typed (see ``sdk._exceptions``): a reply cut off by the token limit raises
``LengthFinishReasonError``, a content-filter stop ``ContentFilterFinishReasonError``, text
that is not JSON or not valid for the type ``OutputParseError`` with the raw text. A refusal
is an answer, not an error: ``message.refusal`` is set and ``parsed`` stays ``None``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import pydantic

from .._exceptions import (
    ContentFilterFinishReasonError,
    LengthFinishReasonError,
    OutputParseError,
)
from ..types import (
    ChatCompletion,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessage,
    FunctionDefinitionParam,
    ParsedChatCompletion,
    ResponseFormatJSONSchemaParam,
)
from .strict_schema import to_strict_json_schema, type_adapter

__all__ = [
    "ModelFunctionDefinition",
    "ParseSpec",
    "parse_chat_completion",
    "prepare_parse",
    "pydantic_function_tool",
    "response_format_param",
]

T = TypeVar("T")


class ModelFunctionDefinition(dict[str, Any]):
    """A tool's ``function`` definition that remembers the model its arguments validate into.

    It is a plain dict on the wire; ``parse()`` uses ``model`` for ``parsed_arguments``.
    """

    def __init__(self, definition: Mapping[str, Any], model: Any) -> None:
        super().__init__(definition)
        self.model = model


def pydantic_function_tool(
    model: type[pydantic.BaseModel], *, name: str | None = None, description: str | None = None
) -> ChatCompletionFunctionToolParam:
    """A strict function tool whose arguments are ``model`` (for ``tools=[...]``).

    >>> class GetWeather(pydantic.BaseModel):
    ...     city: str
    >>> tool = pydantic_function_tool(GetWeather)
    >>> tool["function"]["name"], tool["function"]["strict"]
    ('GetWeather', True)

    With ``parse()``, a call to it comes back with ``function.parsed_arguments`` as a
    ``GetWeather``.
    """
    definition: dict[str, Any] = {
        "name": name or model.__name__,
        "parameters": to_strict_json_schema(model),
        "strict": True,
    }
    summary = description or inspect.cleandoc(model.__doc__ or "")
    if summary:
        definition["description"] = summary
    function = cast(FunctionDefinitionParam, ModelFunctionDefinition(definition, model))
    return {"type": "function", "function": function}


def response_format_param(type_: Any) -> ResponseFormatJSONSchemaParam:
    """The strict ``json_schema`` response format for a pydantic model, dataclass or TypedDict.

    >>> class Point(pydantic.BaseModel):
    ...     x: int
    >>> response_format_param(Point)["json_schema"]["name"]
    'Point'
    """
    return {
        "type": "json_schema",
        "json_schema": {
            "name": getattr(type_, "__name__", "response"),
            "schema": to_strict_json_schema(type_),
            "strict": True,
        },
    }


@dataclass(frozen=True)
class ParseSpec(Generic[T]):
    """What a ``parse()`` call asked for: the type of the reply, and the tools as given."""

    response_format: type[T] | None
    tools: tuple[Mapping[str, Any], ...] = ()

    def tool(self, name: str) -> Mapping[str, Any] | None:
        """The ``function`` definition of the tool called ``name``, if one was given."""
        for tool in self.tools:
            function = tool.get("function")
            if isinstance(function, Mapping) and function.get("name") == name:
                return function
        return None


def prepare_parse(
    response_format: type[T] | None, kwargs: Mapping[str, Any]
) -> tuple[dict[str, Any], ParseSpec[T]]:
    """The keyword arguments ``parse()`` / ``stream()`` send (``create``'s, with the type's
    strict schema as ``response_format``) and what reading the reply needs."""
    spec = ParseSpec(response_format, tuple(kwargs.get("tools") or ()))
    params = dict(kwargs)
    if response_format is not None:
        params["response_format"] = response_format_param(response_format)
    return params, spec


def parse_chat_completion(
    completion: ChatCompletion, spec: ParseSpec[T]
) -> ParsedChatCompletion[T]:
    """``completion`` with ``message.parsed`` and ``parsed_arguments`` filled in.

    Raises ``LengthFinishReasonError``, ``ContentFilterFinishReasonError`` or
    ``OutputParseError`` (see the module docstring).
    """
    for choice in completion.choices:
        if choice.finish_reason == "length":
            raise LengthFinishReasonError(completion=completion)
        if choice.finish_reason == "content_filter":
            raise ContentFilterFinishReasonError(completion=completion)
    data = completion.model_dump()
    for choice, raw in zip(completion.choices, data["choices"], strict=True):
        message = raw["message"]
        message["parsed"] = _parsed_content(completion, choice.message, spec)
        for call in message.get("tool_calls") or ():
            if call.get("type") == "function":
                function = call["function"]
                function["parsed_arguments"] = _parsed_arguments(completion, function, spec)
    parsed: ParsedChatCompletion[T] = ParsedChatCompletion.model_validate(data)
    parsed._response_info = completion.response_info
    return parsed


def _parsed_content(
    completion: ChatCompletion, message: ChatCompletionMessage, spec: ParseSpec[T]
) -> T | None:
    if spec.response_format is None or message.refusal or message.content is None:
        return None
    name = getattr(spec.response_format, "__name__", repr(spec.response_format))
    validate = type_adapter(spec.response_format).validate_json
    return cast(T, _validated(completion, message.content, validate, f"the reply as {name}"))


def _parsed_arguments(
    completion: ChatCompletion, function: Mapping[str, Any], spec: ParseSpec[Any]
) -> object | None:
    definition = spec.tool(function["name"])
    if definition is None:
        return None
    arguments: str = function["arguments"]
    what = f"the arguments of tool call {function['name']!r}"
    model = getattr(definition, "model", None)
    if model is not None:
        return _validated(completion, arguments, type_adapter(model).validate_json, what)
    if definition.get("strict"):
        return _validated(completion, arguments, json.loads, what)
    return None  # a non-strict tool's arguments may be anything; parsing is the caller's


def _validated(
    completion: ChatCompletion, text: str, validate: Callable[[str], object], what: str
) -> object:
    try:
        return validate(text)
    except json.JSONDecodeError as exc:
        error = f"could not parse {what}: not valid JSON ({exc.msg} at position {exc.pos})"
        raise OutputParseError(error, completion=completion, text=text) from None
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False)
        kind = "not valid JSON" if errors[0]["type"] == "json_invalid" else "invalid"
        raise OutputParseError(
            f"could not parse {what}: {kind}: {_summary(errors)}",
            completion=completion,
            text=text,
            errors=errors,
        ) from None


def _summary(errors: Sequence[Mapping[str, Any]]) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more
