"""Fields this server does not implement and must not silently drop.

Ignoring them would change what the client gets: plain text where it asked for a tool call
or guaranteed JSON, one candidate where it asked to rank several, an image it sent never
seen. Each is refused with a 400 (code ``unsupported_parameter``) unless it is null or one of
the values that ask for nothing (``tools: []``, ``tool_choice: "none"``). Each table is
enforced by a check and written into the JSON schema of the models it applies to, from the
same data, so the OpenAPI document says exactly which values pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic.config import JsonDict


@dataclass(frozen=True)
class Unsupported:
    """Why a field is refused, and the values that ask for nothing and so pass."""

    reason: str
    accepted: tuple[Any, ...] = ()

    def accepts(self, value: Any) -> bool:
        # JSON's true is not the number 1, though Python's True == 1
        return value is None or any(
            value == ok and isinstance(value, bool) == isinstance(ok, bool) for ok in self.accepted
        )

    def json_schema(self) -> dict[str, Any]:
        values: list[dict[str, Any]] = [{"const": value} for value in self.accepted]
        return {
            "anyOf": [*values, {"type": "null"}],
            "description": f"Not supported: {self.reason}. Only null"
            + (" or a value that asks for nothing" if values else "")
            + " is accepted; anything else is a 400 (code unsupported_parameter).",
        }


_TOOLS = "tool calling is not supported by this server"
_FUNCTIONS = "function calling is not supported by this server"

# The generation routes' top-level fields, refused whether or not the request model declares
# them (an undeclared one arrives as an extra field).
GENERATION: dict[str, Unsupported] = {
    "tools": Unsupported(_TOOLS, ([],)),
    "functions": Unsupported(_FUNCTIONS, ([],)),
    "tool_choice": Unsupported(_TOOLS, ("none", "auto")),
    "function_call": Unsupported(_FUNCTIONS, ("none", "auto")),
    "response_format": Unsupported(
        "response_format (JSON mode) is not supported by this server", ({"type": "text"},)
    ),
    "prompt_logprobs": Unsupported("prompt_logprobs is not supported by this server"),
    "audio": Unsupported("audio output is not supported: this model writes text only"),
    "modalities": Unsupported('this model writes text only (modalities: ["text"])', (["text"],)),
    "web_search_options": Unsupported("web search is not supported by this server"),
    "suffix": Unsupported("suffix (insertion) is not supported by this server", ("",)),
    "best_of": Unsupported(
        "best_of is not supported: this server does not generate extra candidates to rank",
        (1,),
    ),
}

# /tokenize: a chat's tools would be part of its prompt, but this server cannot render them.
TOKENIZE: dict[str, Unsupported] = {name: GENERATION[name] for name in ("tools", "tool_choice")}

# Inside a chat message: the parts of a tool-calling or audio conversation.
MESSAGE: dict[str, Unsupported] = {
    "tool_calls": Unsupported(_TOOLS, ([],)),
    "function_call": Unsupported(_FUNCTIONS),
    "audio": Unsupported("audio is not supported: this model reads and writes text only"),
}


def first_refused(
    fields: Mapping[str, Any], table: Mapping[str, Unsupported]
) -> tuple[str, str] | None:
    """The first field of ``fields`` that ``table`` refuses, and the message saying why."""
    for name, value in fields.items():
        spec = table.get(name)
        if spec is not None and not spec.accepts(value):
            return name, f"'{name}': {spec.reason}."
    return None


def document(schema: JsonDict, table: Mapping[str, Unsupported]) -> None:
    """Write ``table``'s fields into a model's JSON schema (pydantic ``json_schema_extra``)."""
    properties = schema.setdefault("properties", {})
    assert isinstance(properties, dict)
    for name, spec in table.items():
        properties[name] = spec.json_schema()
