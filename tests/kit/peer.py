"""``Peer``: the server the peer suite (tests/peers) runs against, from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sdk


@dataclass(frozen=True)
class Peer:
    name: str
    base_url: str  # with /v1
    model: str
    api_key: str | None
    gguf: Path | None
    context: int | None
    counts: str | None  # the TokenCount.source count_tokens must report for a chat

    def client(self, **kwargs: Any) -> sdk.Client:
        kwargs.setdefault("api_key", self.api_key or "no-key")
        kwargs.setdefault("timeout", 600.0)
        kwargs.setdefault("max_retries", 0)  # a retry would hide what the server answered
        return sdk.Client(base_url=self.base_url, **kwargs)

    def async_client(self, **kwargs: Any) -> sdk.AsyncClient:
        kwargs.setdefault("api_key", self.api_key or "no-key")
        kwargs.setdefault("timeout", 600.0)
        kwargs.setdefault("max_retries", 0)
        return sdk.AsyncClient(base_url=self.base_url, **kwargs)


def peer_from_environment() -> Peer | None:
    """The peer named by ``LLM_SDK_PEER_*`` (see tests/peers/conftest.py), if one is."""
    base_url = os.environ.get("LLM_SDK_PEER_BASE_URL")
    if not base_url:
        return None
    model = os.environ.get("LLM_SDK_PEER_MODEL")
    if not model:
        raise ValueError("LLM_SDK_PEER_BASE_URL is set: set LLM_SDK_PEER_MODEL too")
    gguf = os.environ.get("LLM_SDK_PEER_GGUF")
    context = os.environ.get("LLM_SDK_PEER_CONTEXT")
    return Peer(
        name=os.environ.get("LLM_SDK_PEER_NAME", base_url),
        base_url=base_url,
        model=model,
        api_key=os.environ.get("LLM_SDK_PEER_API_KEY") or None,
        gguf=Path(gguf) if gguf else None,
        context=int(context) if context else None,
        counts=os.environ.get("LLM_SDK_PEER_COUNTS") or None,
    )
