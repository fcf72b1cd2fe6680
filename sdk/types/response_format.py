"""``response_format``: plain text, JSON mode, or a JSON schema the reply must follow.

``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`` with ``strict:
true`` is OpenAI's Structured Outputs; ``client.chat.completions.parse(response_format=
Model)`` builds it from a pydantic model. Formats this SDK does not know (a server's
``regex`` or ``grammar`` extension) are sent as given.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Required, TypeAlias, TypedDict

from pydantic import ConfigDict, Discriminator, Field, Tag

from ._base import RequestModel
from ._union import OTHER, by_type

__all__ = [
    "JSONSchema",
    "JSONSchemaParam",
    "OtherResponseFormat",
    "ResponseFormat",
    "ResponseFormatJSONObject",
    "ResponseFormatJSONObjectParam",
    "ResponseFormatJSONSchema",
    "ResponseFormatJSONSchemaParam",
    "ResponseFormatParam",
    "ResponseFormatText",
    "ResponseFormatTextParam",
]


class ResponseFormatText(RequestModel):
    type: Literal["text"] = "text"


class ResponseFormatJSONObject(RequestModel):
    type: Literal["json_object"] = "json_object"


class JSONSchema(RequestModel):
    # "schema" would shadow a (deprecated) BaseModel method, hence the alias.
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    name: str
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatJSONSchema(RequestModel):
    type: Literal["json_schema"] = "json_schema"
    json_schema: JSONSchema


class OtherResponseFormat(RequestModel):
    type: str


ResponseFormat: TypeAlias = Annotated[
    Annotated[ResponseFormatText, Tag("text")]
    | Annotated[ResponseFormatJSONObject, Tag("json_object")]
    | Annotated[ResponseFormatJSONSchema, Tag("json_schema")]
    | Annotated[OtherResponseFormat, Tag(OTHER)],
    Discriminator(by_type(("text", "json_object", "json_schema"))),
]


class ResponseFormatTextParam(TypedDict):
    type: Literal["text"]


class ResponseFormatJSONObjectParam(TypedDict):
    type: Literal["json_object"]


class JSONSchemaParam(TypedDict, total=False):
    name: Required[str]
    description: str
    schema: dict[str, object]
    strict: bool | None


class ResponseFormatJSONSchemaParam(TypedDict):
    type: Literal["json_schema"]
    json_schema: JSONSchemaParam


ResponseFormatParam: TypeAlias = (
    ResponseFormatTextParam | ResponseFormatJSONObjectParam | ResponseFormatJSONSchemaParam
)
