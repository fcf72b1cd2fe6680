"""Tagged unions that keep what they do not know.

The wire format tells union members apart by a ``"type"`` field (content parts, tools, tool
choices, response formats). A known tag validates strictly against its model, so a real
mistake (an ``image_url`` part without a ``url``) is caught; an unknown tag goes to a
permissive fallback model instead of failing, so a kind of part or tool that a service adds
later still passes through untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

__all__ = ["OTHER", "by_type"]

OTHER = "other"  # the tag of the fallback member


def by_type(known: Collection[str], *, missing: str = OTHER) -> Callable[[Any], str]:
    """A pydantic ``Discriminator`` function: the ``type`` if it is known, else ``OTHER``.

    ``missing`` is the tag used when the value has no ``type`` at all (some servers omit
    ``"type": "function"`` on tool calls).
    """

    def tag(value: Any) -> str:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        if kind is None:
            return missing
        return kind if kind in known else OTHER

    return tag
