"""A chat request's tools and response format: checked, rendered, and turned into the grammar
the reply is constrained to (issue 10).

* ``response_format``: ``text`` is free text; ``json_object`` any JSON object;
  ``json_schema`` that schema (``strict: true`` also closes its objects, as OpenAI's strict
  mode requires). The prompt is not changed: constrained decoding alone guarantees the shape.
* ``tools`` with ``tool_choice`` ``auto`` (the default), ``required``, a named function or
  ``allowed_tools``: the prompt is rendered by ``sdk.tokens.render_chat`` (the generic format
  of ``sdk.tokens.tool_format`` for a template without tool support, the model's own template
  otherwise) and the reply is constrained to ``tool_reply_schema``: calls of the tools given,
  with arguments valid for each, or (``auto`` only) a plain reply, whose value follows the
  ``response_format`` when one is given. ``tool_choice="none"``: no tools rendered, no
  constraint from them.
* Refused with a 400 naming the field: a tool that is not a function (custom tools take free
  text this format cannot carry), a name OpenAI would refuse, two tools with one name,
  parameters that are not an object schema, a ``tool_choice`` naming a tool that is not
  there, a schema that is invalid or uses a keyword the grammar engine cannot enforce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import anyio

from sdk.tokens import ToolSpec, active_tools, close_objects, tool_reply_schema
from sdk.types import (
    ChatCompletionAllowedToolChoice,
    ChatCompletionFunctionTool,
    ChatCompletionNamedToolChoice,
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
    ResponseFormatText,
)
from server_ref.api.errors import BadRequestError
from server_ref.api.prompts import render_chat
from server_ref.api.schemas import ServerChatCompletionRequest
from server_ref.engine.types import ConstraintError, ConstraintSpec, EngineClient

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what OpenAI accepts as a function name


@dataclass(frozen=True)
class ChatPlan:
    prompt_ids: list[int]
    constraint: ConstraintSpec | None
    tools: ToolSpec | None  # not None: the reply is in the generic tool-call format


async def plan_chat(req: ServerChatCompletionRequest, engine: EngineClient) -> ChatPlan:
    """The prompt and the constraint of a chat request; 400s for what cannot be served."""
    functions = check_tools(req)
    spec = active_tools(req.tools, req.tool_choice, req.parallel_tool_calls)
    response_schema, strict = _response_schema(req)
    prompt_ids = render_chat(
        engine.tokenizer,
        req.messages,
        tools=req.tools,
        tool_choice=req.tool_choice,
        parallel_tool_calls=req.parallel_tool_calls,
    )
    if spec is not None:
        if response_schema is not None and strict:
            response_schema = close_objects(response_schema)
        schema = tool_reply_schema(spec, response_schema=response_schema)
        constraint = _spec(schema, strict=False, param="tools")
        try:
            await _compile(engine, constraint, "tools")
        except BadRequestError:
            await _blame(engine, spec, functions, response_schema)
            raise
    elif response_schema is None:
        constraint = None
    elif isinstance(req.response_format, ResponseFormatJSONObject):
        constraint = ConstraintSpec.json_object()
    else:
        constraint = _spec(response_schema, strict=strict, param="response_format")
        await _compile(engine, constraint, "response_format")
    return ChatPlan(prompt_ids, constraint, spec)


def check_tools(req: ServerChatCompletionRequest) -> dict[str, int]:
    """400 for tools and a tool choice this server cannot serve; ``{name: index}``."""
    functions: dict[str, int] = {}
    for i, tool in enumerate(req.tools or ()):
        if not isinstance(tool, ChatCompletionFunctionTool):
            raise BadRequestError(
                f"tools[{i}]: only tools of type 'function' are supported, not {tool.type!r}.",
                param=f"tools[{i}].type",
            )
        name, param = tool.function.name, f"tools[{i}].function.name"
        if not _NAME.fullmatch(name):
            raise BadRequestError(
                f"{param}: {name!r} must be 1 to 64 letters, digits, '_' or '-'.", param=param
            )
        if name in functions:
            raise BadRequestError(f"{param}: two tools are named {name!r}.", param=param)
        parameters = tool.function.parameters
        if parameters is not None and parameters.get("type", "object") != "object":
            param = f"tools[{i}].function.parameters"
            raise BadRequestError(f"{param} must be the JSON schema of an object.", param=param)
        functions[name] = i
    _check_tool_choice(req.tool_choice, functions)
    return functions


def _check_tool_choice(choice: object, functions: dict[str, int]) -> None:
    def missing(name: str) -> BadRequestError:
        return BadRequestError(
            f"tool_choice names the function {name!r}, which is not in tools.", param="tool_choice"
        )

    if choice is None or choice in ("none", "auto"):
        return
    if choice == "required":
        if not functions:
            raise BadRequestError(
                "tool_choice 'required' needs at least one tool in tools.", param="tool_choice"
            )
    elif isinstance(choice, ChatCompletionNamedToolChoice):
        if choice.function.name not in functions:
            raise missing(choice.function.name)
    elif isinstance(choice, ChatCompletionAllowedToolChoice):
        allowed = choice.allowed_tools
        if allowed.mode not in ("auto", "required"):
            param = "tool_choice.allowed_tools.mode"
            raise BadRequestError(
                f"{param} must be 'auto' or 'required', not {allowed.mode!r}.", param=param
            )
        for tool in allowed.tools:
            function = tool.get("function")
            name = function.get("name") if isinstance(function, dict) else None
            if name not in functions:
                raise missing(str(name))
    else:
        kind = getattr(choice, "type", choice)
        raise BadRequestError(
            f"tool_choice of type {kind!r} is not supported: give 'none', 'auto', 'required', "
            "a function or allowed_tools.",
            param="tool_choice",
        )


def _response_schema(req: ServerChatCompletionRequest) -> tuple[dict[str, Any] | None, bool]:
    """The schema the answer must follow, if ``response_format`` asks for one, and whether
    it is strict."""
    fmt = req.response_format
    if fmt is None or isinstance(fmt, ResponseFormatText):
        return None, False
    if isinstance(fmt, ResponseFormatJSONObject):
        return {"type": "object"}, False
    if not isinstance(fmt, ResponseFormatJSONSchema):
        raise BadRequestError(
            f"response_format of type {fmt.type!r} is not supported: give 'text', "
            "'json_object' or 'json_schema'.",
            param="response_format.type",
        )
    schema = fmt.json_schema.schema_
    if schema is None:
        raise BadRequestError(
            "response_format.json_schema.schema is required.",
            param="response_format.json_schema.schema",
        )
    return schema, bool(fmt.json_schema.strict)


def _spec(schema: dict[str, Any], *, strict: bool, param: str) -> ConstraintSpec:
    try:
        return ConstraintSpec.json_schema(schema, strict=strict)
    except ConstraintError as exc:
        raise BadRequestError(f"{param}: {exc}", param=param) from None


async def _compile(engine: EngineClient, spec: ConstraintSpec, param: str) -> None:
    """Compile in a worker thread (a large schema can take a while); a 400 if it fails."""
    try:
        await anyio.to_thread.run_sync(engine.check_constraint, spec)
    except ConstraintError as exc:
        raise BadRequestError(f"{param}: {exc}", param=param) from None


async def _blame(
    engine: EngineClient,
    spec: ToolSpec,
    functions: dict[str, int],
    response_schema: dict[str, Any] | None,
) -> None:
    """The reply schema did not compile: a 400 naming the tool (or response format) whose
    schema is at fault, when one alone is."""
    for tool in spec.tools:
        param = f"tools[{functions[tool['name']]}].function.parameters"
        await _compile(engine, _spec(tool["parameters"], strict=False, param=param), param)
    if response_schema is not None:
        param = "response_format"
        await _compile(engine, _spec(response_schema, strict=False, param=param), param)
