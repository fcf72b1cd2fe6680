"""The gate ``serve`` puts in front of the app while the model loads."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from server_ref.api.readiness import DeferredApp


@pytest.mark.parametrize("path", ["/health", "/v1/models", "/v1/chat/completions"])
async def test_503_in_openai_shape_while_loading(path: str) -> None:
    gate = DeferredApp()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gate), base_url="http://t") as c:
        r = await c.post(path, json={}) if "chat" in path else await c.get(path)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "2"
    assert r.json()["error"]["code"] == "model_loading"
    assert "not ready" in r.json()["error"]["message"]


async def test_hands_over_once_loaded() -> None:
    gate = DeferredApp()
    real = FastAPI()
    real.get("/health")(lambda: {"status": "ok"})
    gate.app = real
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gate), base_url="http://t") as c:
        r = await c.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
