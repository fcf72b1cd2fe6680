"""JSON schemas in the subset OpenAI's strict mode (Structured Outputs) accepts.

Strict mode needs every object to say ``"additionalProperties": false`` and to list all of
its properties as ``required`` (an optional field is one whose value may be ``null``), and it
does not accept ``default`` or a ``$ref`` with sibling keys. pydantic's schemas break each
rule, so ``to_strict_json_schema`` rewrites one:

* objects: ``additionalProperties: false`` unless the schema says otherwise, every property
  required (``Optional`` fields stay nullable, so the model can still say "none");
* ``default`` removed everywhere (the model must always write the value);
* ``oneOf`` (pydantic's discriminated unions) becomes ``anyOf``, which strict mode supports
  and which means the same when a discriminator keeps the branches apart;
* a one-element ``allOf`` and a ``$ref`` with siblings are inlined; ``$defs`` are kept and
  rewritten too, so recursive models still work through plain ``$ref``s.

The rules follow openai-python's ``to_strict_json_schema`` and the fix its issue tracker
found for non-null defaults (openai-agents-python #4390).
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from functools import lru_cache
from typing import Any

import pydantic

from .._exceptions import InvalidRequestParamsError

__all__ = ["make_strict", "to_strict_json_schema", "type_adapter"]


def type_adapter(type_: object) -> pydantic.TypeAdapter[Any]:
    """One ``TypeAdapter`` per type (building one compiles a validator)."""
    return _adapter(type_)


@lru_cache(maxsize=256)
def _adapter(type_: Hashable) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(type_)


def to_strict_json_schema(type_: Any) -> dict[str, Any]:
    """The strict-mode JSON schema of a pydantic model, dataclass or TypedDict.

    >>> class Point(pydantic.BaseModel):
    ...     x: int
    ...     label: str | None = None
    >>> to_strict_json_schema(Point)["required"]
    ['x', 'label']
    """
    try:
        schema = type_adapter(type_).json_schema()
    except (pydantic.PydanticUserError, TypeError) as exc:  # not a type pydantic can describe
        raise InvalidRequestParamsError(f"cannot build a JSON schema for {type_!r}: {exc}") from exc
    if schema.get("type") != "object":
        raise InvalidRequestParamsError(
            f"{type_!r} must describe a JSON object (a pydantic model, dataclass or TypedDict); "
            f"its schema is {schema!r}"
        )
    return make_strict(schema)


def make_strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A strict-mode copy of ``schema`` (the argument is left as it was)."""
    root = copy.deepcopy(schema)
    return _strict(root, root)


def _strict(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    for defs_key in ("$defs", "definitions"):
        for name, definition in (node.get(defs_key) or {}).items():
            node[defs_key][name] = _strict(definition, root)
    if node.get("type") == "object":
        node.setdefault("additionalProperties", False)
    properties = node.get("properties")
    if isinstance(properties, dict):
        node["properties"] = {key: _strict(value, root) for key, value in properties.items()}
        node["required"] = list(properties)
    if isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"], root)
    if isinstance(node.get("prefixItems"), list):
        node["prefixItems"] = [_strict(item, root) for item in node["prefixItems"]]
    if isinstance(node.get("oneOf"), list):
        node["anyOf"] = node.pop("oneOf")
        node.pop("discriminator", None)
    if isinstance(node.get("anyOf"), list):
        node["anyOf"] = [_strict(branch, root) for branch in node["anyOf"]]
    all_of = node.get("allOf")
    if isinstance(all_of, list):
        if len(all_of) == 1:
            del node["allOf"]
            node.update({**_strict(all_of[0], root), **node})
        else:
            node["allOf"] = [_strict(part, root) for part in all_of]
    node.pop("default", None)
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:
        # {"$ref": ..., "description": ...}: strict mode takes a $ref only on its own.
        del node["$ref"]
        node.update({**_resolve(root, ref), **node})
        return _strict(node, root)
    return node


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise InvalidRequestParamsError(
            f"cannot resolve $ref {ref!r}: only local refs are supported"
        )
    target: Any = root
    for key in ref[2:].split("/"):
        target = target.get(key) if isinstance(target, dict) else None
    if not isinstance(target, dict):
        raise InvalidRequestParamsError(f"cannot resolve $ref {ref!r} in the schema")
    return copy.deepcopy(target)
