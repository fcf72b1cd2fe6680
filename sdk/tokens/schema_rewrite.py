"""JSON-schema rewrites: OpenAI's strict mode, and embedding one schema inside another.

Pure JSON in, JSON out: the server's grammar compiler (``server_ref.engine.constraints``) closes
strict schemas with it, and ``tool_reply`` builds the generic tool-call format's schema with it.

* ``close_objects``: with ``strict: true`` OpenAI requires every object schema to say
  ``"additionalProperties": false``. A schema that leaves it out is closed here instead of
  refused, so constrained output never invents keys. vLLM does the same for its llguidance
  backend (``disable_additional_properties``); xgrammar's ``strict_mode`` means the same.
* ``embed_schema``: a schema placed inside a larger one (a tool's ``parameters`` inside the
  tool-call format) keeps its ``$ref``s working: it moves under the root's ``$defs`` and its
  local references are rewritten to point there.

Both follow only the keywords whose values are schemas, so data such as ``const``, ``enum`` or
``default`` values and property *names* are never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["close_objects", "embed_schema"]

# where JSON Schema (2020-12 and draft 7) nests schemas: as a value, a list, or a map of them
_SUBSCHEMA = frozenset(
    {
        "items",
        "additionalItems",
        "contains",
        "not",
        "if",
        "then",
        "else",
        "additionalProperties",
        "unevaluatedProperties",
        "unevaluatedItems",
        "propertyNames",
    }
)
_SUBSCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems", "items"})
_SUBSCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
_OPEN_KEYS = ("additionalProperties", "unevaluatedProperties", "patternProperties")

# (schema node with its subschemas already rewritten, keyword it sits under) -> new node
_Rewrite = Callable[[dict[str, Any], str | None], dict[str, Any]]


def close_objects(schema: Any) -> Any:
    """A copy of ``schema`` where every object schema that does not say whether it accepts
    more properties gets ``"additionalProperties": false``. Members of ``allOf`` stay open:
    closing each would reject their union.

    >>> close_objects({"type": "object", "properties": {"a": {"type": "object"}}})["properties"]
    {'a': {'type': 'object', 'additionalProperties': False}}
    """

    def close(node: dict[str, Any], parent: str | None) -> dict[str, Any]:
        types = node.get("type")
        is_object = types == "object" or (isinstance(types, list) and "object" in types)
        says = any(k in node for k in _OPEN_KEYS)
        if (is_object or "properties" in node) and parent != "allOf" and not says:
            return {**node, "additionalProperties": False}
        return node

    return _rewrite(schema, close, None)


def embed_schema(schema: Any, defs: dict[str, Any], name: str) -> dict[str, Any]:
    """Store ``schema`` as ``defs[name]`` (the root's ``$defs``) and return a reference to it.
    Local ``$ref``s inside it ("#", "#/$defs/X") are rewritten to stay correct there.

    >>> defs = {}
    >>> embed_schema({"$defs": {"A": {"type": "string"}}, "$ref": "#/$defs/A"}, defs, "t0")
    {'$ref': '#/$defs/t0'}
    >>> defs["t0"]["$ref"]
    '#/$defs/t0/$defs/A'
    """
    if not name.replace("_", "").isalnum():
        raise ValueError(f"{name!r} is not a plain $defs name")  # no JSON-pointer escaping
    prefix = f"#/$defs/{name}"

    def relocate(node: dict[str, Any], parent: str | None) -> dict[str, Any]:
        ref = node.get("$ref")
        if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
            return {**node, "$ref": prefix + ref[1:]}
        return node

    defs[name] = _rewrite(schema, relocate, None)
    return {"$ref": prefix}


def _rewrite(node: Any, fn: _Rewrite, parent: str | None) -> Any:
    """Apply ``fn`` bottom-up to every schema object in ``node``; returns a new tree."""
    if not isinstance(node, dict):
        return node  # booleans are schemas too, but nothing here applies to them
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SUBSCHEMA_LISTS and isinstance(value, list):
            out[key] = [_rewrite(s, fn, key) for s in value]
        elif key in _SUBSCHEMA:
            out[key] = _rewrite(value, fn, key)
        elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            out[key] = {prop: _rewrite(s, fn, key) for prop, s in value.items()}
        else:
            out[key] = value
    return fn(out, parent)
