"""The reference server's OpenAI-compatible HTTP layer (FastAPI), built on ``EngineClient``."""

from __future__ import annotations

from server_ref.api.app import create_app

__all__ = ["create_app"]
