"""Tools: what a client offers the model (``tools``, ``tool_choice``) and the calls it gets back.

Request side (strict ``RequestModel``s, unknown fields forwarded): function tools with a JSON
schema of their ``parameters`` (``strict`` asks the service to follow it exactly), custom
tools (free-text input, optionally a grammar), and ``tool_choice``: ``"none"``, ``"auto"``,
``"required"``, a named function or custom tool, or an ``allowed_tools`` subset. Tool kinds
and tool-choice kinds this SDK does not know yet are sent as given.

Response side (lax ``APIObject``s, unknown fields kept): ``message.tool_calls`` (a function
call's ``arguments`` is a JSON *string*, exactly as the model wrote it) and their stream
deltas, merged by ``index``. The same call models are accepted in an assistant message sent
back as history.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Required, TypeAlias, TypedDict

from pydantic import Discriminator, Tag

from ._base import APIObject, RequestModel
from ._union import OTHER, by_type

__all__ = [
    "AllowedTools",
    "AllowedToolsParam",
    "ChatCompletionAllowedToolChoice",
    "ChatCompletionAllowedToolChoiceParam",
    "ChatCompletionCustomTool",
    "ChatCompletionCustomToolParam",
    "ChatCompletionFunctionTool",
    "ChatCompletionFunctionToolParam",
    "ChatCompletionMessageCustomToolCall",
    "ChatCompletionMessageCustomToolCallParam",
    "ChatCompletionMessageFunctionToolCall",
    "ChatCompletionMessageFunctionToolCallParam",
    "ChatCompletionMessageToolCall",
    "ChatCompletionMessageToolCallParam",
    "ChatCompletionNamedToolChoice",
    "ChatCompletionNamedToolChoiceCustom",
    "ChatCompletionNamedToolChoiceCustomParam",
    "ChatCompletionNamedToolChoiceParam",
    "ChatCompletionTool",
    "ChatCompletionToolChoice",
    "ChatCompletionToolChoiceOptionParam",
    "ChatCompletionToolParam",
    "ChoiceDeltaFunctionCall",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "CustomCall",
    "CustomCallParam",
    "CustomToolDefinition",
    "CustomToolDefinitionParam",
    "Function",
    "FunctionCall",
    "FunctionCallOption",
    "FunctionCallOptionParam",
    "FunctionCallParam",
    "FunctionDefinition",
    "FunctionDefinitionParam",
    "NamedTool",
    "NamedToolParam",
    "OtherTool",
    "OtherToolChoice",
]


# --- tool definitions (request) --------------------------------------------------------------


class FunctionDefinition(RequestModel):
    """A function the model may call: its ``parameters`` are a JSON schema (an object)."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatCompletionFunctionTool(RequestModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class CustomToolDefinition(RequestModel):
    name: str
    description: str | None = None
    format: dict[str, Any] | None = None  # {"type": "text"} or {"type": "grammar", ...}


class ChatCompletionCustomTool(RequestModel):
    type: Literal["custom"] = "custom"
    custom: CustomToolDefinition


class OtherTool(RequestModel):
    """A kind of tool this SDK does not know; sent exactly as given."""

    type: str


ChatCompletionTool: TypeAlias = Annotated[
    Annotated[ChatCompletionFunctionTool, Tag("function")]
    | Annotated[ChatCompletionCustomTool, Tag("custom")]
    | Annotated[OtherTool, Tag(OTHER)],
    Discriminator(by_type(("function", "custom"))),
]


# --- tool_choice (request) ---------------------------------------------------------------------


class NamedTool(RequestModel):
    name: str


class ChatCompletionNamedToolChoice(RequestModel):
    """``{"type": "function", "function": {"name": "get_weather"}}``: call this function."""

    type: Literal["function"] = "function"
    function: NamedTool


class ChatCompletionNamedToolChoiceCustom(RequestModel):
    type: Literal["custom"] = "custom"
    custom: NamedTool


class AllowedTools(RequestModel):
    mode: str  # "auto" | "required"
    tools: list[dict[str, Any]]


class ChatCompletionAllowedToolChoice(RequestModel):
    type: Literal["allowed_tools"] = "allowed_tools"
    allowed_tools: AllowedTools


class OtherToolChoice(RequestModel):
    type: str


ChatCompletionToolChoice: TypeAlias = (
    Literal["none", "auto", "required"]
    | Annotated[
        Annotated[ChatCompletionNamedToolChoice, Tag("function")]
        | Annotated[ChatCompletionNamedToolChoiceCustom, Tag("custom")]
        | Annotated[ChatCompletionAllowedToolChoice, Tag("allowed_tools")]
        | Annotated[OtherToolChoice, Tag(OTHER)],
        Discriminator(by_type(("function", "custom", "allowed_tools"))),
    ]
)


class FunctionCallOption(RequestModel):
    """Legacy ``function_call={"name": ...}`` (the ``functions`` API before tools)."""

    name: str


# --- tool calls (response; also accepted back in assistant messages) -------------------------


class Function(APIObject):
    name: str
    arguments: str  # JSON text as the model wrote it; may be invalid JSON


class ChatCompletionMessageFunctionToolCall(APIObject):
    id: str
    type: Literal["function"] = "function"
    function: Function


class CustomCall(APIObject):
    name: str
    input: str


class ChatCompletionMessageCustomToolCall(APIObject):
    id: str
    type: Literal["custom"] = "custom"
    custom: CustomCall


def _call_tag(value: Any) -> str:
    # Only "custom" differs; a call without a type (some servers omit it) is a function call.
    return "custom" if by_type(("custom",))(value) == "custom" else "function"


ChatCompletionMessageToolCall: TypeAlias = Annotated[
    Annotated[ChatCompletionMessageFunctionToolCall, Tag("function")]
    | Annotated[ChatCompletionMessageCustomToolCall, Tag("custom")],
    Discriminator(_call_tag),
]


class FunctionCall(APIObject):
    """Legacy ``message.function_call`` (the ``functions`` API before tools)."""

    name: str
    arguments: str


class ChoiceDeltaToolCallFunction(APIObject):
    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(APIObject):
    """A piece of a tool call in a stream: ``id``, ``type`` and ``name`` come once (usually
    first), ``arguments`` in pieces. ``index`` says which call of the message it belongs to."""

    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: ChoiceDeltaToolCallFunction | None = None


class ChoiceDeltaFunctionCall(APIObject):
    name: str | None = None
    arguments: str | None = None


# --- TypedDicts for keyword arguments --------------------------------------------------------


class FunctionDefinitionParam(TypedDict, total=False):
    name: Required[str]
    description: str
    parameters: dict[str, object]
    strict: bool | None


class ChatCompletionFunctionToolParam(TypedDict):
    type: Literal["function"]
    function: FunctionDefinitionParam


class CustomToolDefinitionParam(TypedDict, total=False):
    name: Required[str]
    description: str
    format: dict[str, object]


class ChatCompletionCustomToolParam(TypedDict):
    type: Literal["custom"]
    custom: CustomToolDefinitionParam


ChatCompletionToolParam: TypeAlias = ChatCompletionFunctionToolParam | ChatCompletionCustomToolParam


class NamedToolParam(TypedDict):
    name: str


class ChatCompletionNamedToolChoiceParam(TypedDict):
    type: Literal["function"]
    function: NamedToolParam


class ChatCompletionNamedToolChoiceCustomParam(TypedDict):
    type: Literal["custom"]
    custom: NamedToolParam


class AllowedToolsParam(TypedDict):
    mode: Literal["auto", "required"]
    tools: list[dict[str, object]]


class ChatCompletionAllowedToolChoiceParam(TypedDict):
    type: Literal["allowed_tools"]
    allowed_tools: AllowedToolsParam


ChatCompletionToolChoiceOptionParam: TypeAlias = (
    Literal["none", "auto", "required"]
    | ChatCompletionNamedToolChoiceParam
    | ChatCompletionNamedToolChoiceCustomParam
    | ChatCompletionAllowedToolChoiceParam
)


class FunctionCallOptionParam(TypedDict):
    name: str


class FunctionCallParam(TypedDict):
    name: str
    arguments: str


class ChatCompletionMessageFunctionToolCallParam(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCallParam


class CustomCallParam(TypedDict):
    name: str
    input: str


class ChatCompletionMessageCustomToolCallParam(TypedDict):
    id: str
    type: Literal["custom"]
    custom: CustomCallParam


ChatCompletionMessageToolCallParam: TypeAlias = (
    ChatCompletionMessageFunctionToolCallParam | ChatCompletionMessageCustomToolCallParam
)
