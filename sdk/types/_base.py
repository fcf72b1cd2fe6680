"""Base classes for the wire models.

Two kinds of model, two policies:

* ``RequestModel`` — what a client sends. Strict types (``"0.5"`` is not a float), unknown
  fields kept and forwarded, so extensions a server understands (``repetition_penalty`` …)
  still reach it. The SDK validates call parameters with these before any HTTP happens; the
  reference server subclasses them with ``extra="forbid"`` and range checks.
* ``APIObject`` — what a server answers. Lax types and ``extra="allow"`` so a newer or
  different server (vLLM, llama.cpp, a hosted API) adding fields never breaks parsing.

Both use ``defer_build`` so ``import sdk`` does not pay for building ~40 validators up front.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = ["APIObject", "RequestModel", "ResponseInfo", "omitted_if_none"]


class RequestModel(BaseModel):
    """Base of every request body model (strict types, unknown fields forwarded)."""

    model_config = ConfigDict(strict=True, extra="allow", defer_build=True)


@dataclass(frozen=True)
class ResponseInfo:
    """HTTP facts about the response an object was parsed from.

    >>> completion.response_info.request_id  # doctest: +SKIP
    'req_7f3a...'

    ``endpoint``: the name of the ``Router`` endpoint that answered (``None`` for a client).
    """

    status_code: int
    headers: Mapping[str, str]
    request_id: str | None
    retries_taken: int
    endpoint: str | None = None


class APIObject(BaseModel):
    """Base of every response model (lax types, unknown fields kept in ``model_extra``)."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    _response_info: ResponseInfo | None = PrivateAttr(default=None)

    @property
    def response_info(self) -> ResponseInfo | None:
        """Status, headers, request id and retry count of the HTTP response, when known.

        ``None`` for objects built locally (by a server, or by stream accumulation).
        """
        return self._response_info


def _is_none(value: object) -> bool:
    return value is None


def omitted_if_none() -> Any:
    """A field that defaults to ``None`` and is left out of a dump while it is ``None``.

    For the optional parts of a reply (``tool_calls``, ``audio``, usage details ...): OpenAI
    leaves them out when there is nothing to say, and so does a server built on these models.
    """
    return Field(default=None, exclude_if=_is_none)
