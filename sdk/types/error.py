"""The error body every status >= 400 carries: ``{"error": {"message", "type", "param", "code"}}``.

A stream that fails after it started sends the same object as a ``data:`` event.
"""

from __future__ import annotations

from ._base import APIObject

__all__ = ["ErrorObject", "ErrorResponse"]


class ErrorObject(APIObject):
    message: str
    type: str | None = None
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(APIObject):
    error: ErrorObject
