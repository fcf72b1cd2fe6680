"""Fields this server does not implement and must not silently drop.

Ignoring them would change what the client gets: a plain reply where it asked for a legacy
function call or audio, one candidate where it asked to rank several, a tool call or
guaranteed JSON from the endpoint that does not serve them. Each is refused with a 400 (code
``unsupported_parameter``) unless it is null or one of the values that ask for nothing
(``functions: []``, ``tool_choice: "none"``). Each table is enforced by a check and written
into the JSON schema of the models it applies to, from the same data, so the OpenAPI
document says exactly which values pass."""

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


_FUNCTIONS = "the deprecated functions API is not supported; send tools instead"
_CHAT_ONLY = "{} is served by /v1/chat/completions, not by this endpoint"

# The generation routes' top-level fields, refused whether or not the request model declares
# them (an undeclared one arrives as an extra field). The legacy ``functions`` API is refused
# rather than mapped: its replies have another shape (``message.function_call``, finish
# reason "function_call") that its clients expect.
CHAT: dict[str, Unsupported] = {
    "functions": Unsupported(_FUNCTIONS, ([],)),
    "function_call": Unsupported(
        "the deprecated functions API is not supported; send tool_choice instead",
        ("none", "auto"),
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

# /v1/completions: the chat route's, and tools and structured outputs, which it serves alone.
COMPLETION: dict[str, Unsupported] = {
    **CHAT,
    "tools": Unsupported(_CHAT_ONLY.format("tool calling"), ([],)),
    "tool_choice": Unsupported(_CHAT_ONLY.format("tool calling"), ("none", "auto")),
    "response_format": Unsupported(
        _CHAT_ONLY.format("response_format (structured output)"), ({"type": "text"},)
    ),
}

# Inside a chat message: the parts of a legacy function-calling or audio conversation.
MESSAGE: dict[str, Unsupported] = {
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
