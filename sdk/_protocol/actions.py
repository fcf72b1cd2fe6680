"""The actions a flow yields and the driver performs (the vocabulary of ``flow``).

Kept apart from ``flow`` so that the clients can import it without the wire models:
``import sdk; sdk.Client()`` then loads neither pydantic nor ``sdk.types`` until a call is
made (measured by ``benchmarks/bench_sdk.py``).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

import httpx

__all__ = ["ACTIONS", "Action", "Close", "Flow", "ReadBody", "ReadChunk", "Send", "Sent", "Sleep"]

R = TypeVar("R")
C = TypeVar("C")  # the driver's byte iterator (sync or async); opaque to the flow


@dataclass(frozen=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True)
class Sent(Generic[C]):
    response: httpx.Response
    chunks: C


@dataclass(frozen=True)
class ReadBody:
    response: httpx.Response


@dataclass(frozen=True)
class ReadChunk(Generic[C]):
    response: httpx.Response
    chunks: C


@dataclass(frozen=True)
class Close:
    response: httpx.Response


@dataclass(frozen=True)
class Sleep:
    seconds: float


Action: TypeAlias = Send | ReadBody | ReadChunk[Any] | Close | Sleep
ACTIONS = (Send, ReadBody, ReadChunk, Close, Sleep)  # for isinstance: action or result?
Flow: TypeAlias = Generator[Action, Any, R]
